import Foundation
import NIOCore

/// Limits shared by every connection of one server: how many may be open, how long one may take to send its
/// first request head.
final class ConnectionLimits: @unchecked Sendable {
    let maxConnections: Int
    let headerTimeout: TimeAmount
    private let lock = NSLock()
    private var open = 0

    init(maxConnections: Int, headerTimeoutSeconds: Int) {
        self.maxConnections = maxConnections
        headerTimeout = .seconds(Int64(headerTimeoutSeconds))
    }

    /// Counts a new connection in; false (and not counted) when the server is full.
    func admit() -> Bool {
        lock.withLock {
            guard open < maxConnections else { return false }
            open += 1
            return true
        }
    }

    func release() { lock.withLock { open -= 1 } }

    var openConnections: Int { lock.withLock { open } }
}

/// One per connection, after HTTP decoding:
/// - refuses a connection beyond `maxConnections` (closed at once);
/// - closes a connection whose first request head has not arrived within `headerTimeout` (slow loris: a head
///   trickled in byte by byte resets an idle timer, not this deadline);
/// - closes a connection whose client has closed its side. The server allows half-closed connections, so
///   without this a client that hangs up on a non-streaming request would go unnoticed until the answer is
///   written: its generation would run to the end and be billed as answered.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let limits: ConnectionLimits
    private var counted = false
    private var started = false
    private var headDeadline: Scheduled<Void>?

    init(limits: ConnectionLimits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        guard limits.admit() else {
            context.close(promise: nil)
            return
        }
        counted = true
        let channel = context.channel
        headDeadline = context.eventLoop.scheduleTask(in: limits.headerTimeout) { channel.close(promise: nil) }
    }

    /// Decoded parts only arrive once a request head is complete.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        headDeadline?.cancel()
        headDeadline = nil
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        headDeadline = nil
        if counted {
            counted = false
            limits.release()
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        if counted {
            counted = false
            limits.release()
        }
    }
}
