import Foundation

/// The weights of a Hugging Face model directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists in its `weight_map`. Every file is memory-mapped once.
///
/// ```swift
/// let checkpoint = try Checkpoint(directory: "models/tiny")
/// let embed = try checkpoint.tensor("model.embed_tokens.weight")   // dtype, shape, pointer
/// ```
public final class Checkpoint: TensorStore, @unchecked Sendable {
    public let directory: String
    public let files: [SafeTensorsFile]
    private let location: [String: TensorData]

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let index = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        let single = (directory as NSString).appendingPathComponent("model.safetensors")
        var files: [SafeTensorsFile] = []
        var location: [String: TensorData] = [:]
        if fm.fileExists(atPath: index) {
            guard let data = fm.contents(atPath: index) else { throw FormatError.unreadable(path: index, reason: "cannot open") }
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let weightMap = json["weight_map"] as? [String: String] else {
                throw FormatError.badConfig(path: index, reason: "not a JSON object with a \"weight_map\" of tensor name → file")
            }
            var opened: [String: SafeTensorsFile] = [:]
            for shard in Set(weightMap.values).sorted() {
                guard !shard.contains("/") else { throw FormatError.badConfig(path: index, reason: "shard name '\(shard)' is not a plain file name") }
                let file = try SafeTensorsFile(path: (directory as NSString).appendingPathComponent(shard))
                opened[shard] = file
                files.append(file)
            }
            for (name, shard) in weightMap {
                guard let t = opened[shard]!.tensors[name] else {
                    throw FormatError.badTensor(path: opened[shard]!.path, tensor: name, reason: "listed in the index but absent from the shard")
                }
                location[name] = t
            }
        } else if fm.fileExists(atPath: single) {
            let file = try SafeTensorsFile(path: single)
            files = [file]
            location = file.tensors
        } else {
            throw FormatError.noCheckpoint(directory: directory)
        }
        self.files = files
        self.location = location
    }

    public var tensorNames: [String] { location.keys.sorted() }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The tensor called `name`, or an error naming it and the directory.
    public func tensor(_ name: String) throws -> TensorData {
        guard let t = location[name] else { throw FormatError.missingTensor(tensor: name, directory: directory) }
        return t
    }

    public var fileCount: Int { files.count }
    public var source: String { directory }

    /// Total bytes of all tensors.
    public var byteCount: Int { location.values.reduce(0) { $0 + $1.byteCount } }

    public func releasePages(of t: TensorData) {
        guard location[t.name]?.pointer == t.pointer else { return }   // (only this checkpoint's read-only mappings)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: t.pointer) + page - 1) / page * page, end = (Int(bitPattern: t.pointer) + t.byteCount) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, Int32(MADV_DONTNEED)) }
    }
}

/// Where a model's weights come from, by Hugging Face tensor name: a safetensors `Checkpoint`, or a GGUF file
/// whose tensors `GGUFCheckpoint` presents under those names.
public protocol TensorStore: AnyObject, Sendable {
    /// The directory or file the weights were read from (for messages).
    var source: String { get }
    var tensorNames: [String] { get }
    /// Files the weights span.
    var fileCount: Int { get }
    /// Total bytes of all tensors.
    var byteCount: Int { get }
    func contains(_ name: String) -> Bool
    /// The tensor called `name`, or an error naming it.
    func tensor(_ name: String) throws -> TensorData
    /// Lets the OS drop `t`'s pages from memory, for a tensor read once into a copy (a memory-mapped file's pages are
    /// read again if touched); does nothing where the data are not a file's.
    func releasePages(of t: TensorData)
}

extension TensorStore {
    public func releasePages(of t: TensorData) {}

    /// The tensor called `name`, checked to have `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> TensorData {
        let t = try tensor(name)
        guard t.shape == shape else { throw FormatError.shapeMismatch(tensor: name, expected: shape, found: t.shape) }
        return t
    }
}

/// A multimodal checkpoint's language model (Qwen3.5's `model.language_model.*`) under the names a text model's
/// weights have (`model.*`); the other towers (`model.visual.*`) are not shown.
public final class LanguageModelView: TensorStore, @unchecked Sendable {
    public static let prefix = "model.language_model."
    public let base: any TensorStore

    init(_ base: any TensorStore) { self.base = base }

    /// `store` seen through this view when it holds a language model under `prefix`, else `store` itself.
    public static func unwrapping(_ store: any TensorStore) -> any TensorStore {
        store.contains(prefix + "embed_tokens.weight") ? LanguageModelView(store) : store
    }

    private func stored(_ name: String) -> String {
        name.hasPrefix("model.") ? Self.prefix + name.dropFirst("model.".count) : name
    }

    public var source: String { base.source }
    public var tensorNames: [String] {
        base.tensorNames.compactMap { n in
            if n.hasPrefix(Self.prefix) { return "model." + n.dropFirst(Self.prefix.count) }
            return n.hasPrefix("model.") ? nil : n
        }
    }
    public var fileCount: Int { base.fileCount }
    public var byteCount: Int { base.byteCount }
    public func contains(_ name: String) -> Bool { base.contains(stored(name)) }
    public func tensor(_ name: String) throws -> TensorData { try base.tensor(stored(name)) }
    public func releasePages(of t: TensorData) { base.releasePages(of: t) }
}
