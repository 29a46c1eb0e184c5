import Foundation
import MoEFormats
import MoEKernels

/// The trainer's checkpoints: `checkpoint-STEP/` written through a temporary directory and renamed into place, the
/// model files at the top of OUT, and the resume that reads them back.
extension Trainer {
    struct State: Codable {
        var step: Int
        var tokensSeen: Int
        var elapsed: Double
        var batches: Data
        var settings: TrainingSettings
        var optimizerStep: Int
    }

    /// Writes `OUT/checkpoint-STEP/` (model, tokenizer files, optimizer moments, trainer state) through a
    /// temporary directory, updates the model files at the top of OUT, and keeps the two newest checkpoints.
    /// `moments`: the optimizer's in the store's layout when it keeps a share only (ZeRO-1).
    func saveCheckpoint(elapsed: Double, moments: (m: [Float], v: [Float])? = nil) throws {
        let name = "checkpoint-\(step)"
        let final = "\(out)/\(name)", tmp = "\(out)/.\(name).tmp"
        let fm = FileManager.default
        do {
            try? fm.removeItem(atPath: tmp)
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            if let lora { try lora.save(to: tmp) } else { try model.save(to: tmp) }
            if var moments {
                try moments.m.withUnsafeMutableBufferPointer { m in
                    try moments.v.withUnsafeMutableBufferPointer { v in
                        try Self.writeMoments(m: m.baseAddress!, v: v.baseAddress!, trainedStore, to: "\(tmp)/optimizer.safetensors")
                    }
                }
            } else {
                try Self.writeMoments(optimizer, trainedStore, to: "\(tmp)/optimizer.safetensors")
            }
            for j in jointlyTrained {
                try j.model.save(to: "\(tmp)/\(j.name)")
                try Self.writeMoments(j.optimizer, j.model.store, to: "\(tmp)/\(j.name)/optimizer.safetensors")
            }
            for f in extraFiles { try fm.copyItem(atPath: f, toPath: "\(tmp)/\((f as NSString).lastPathComponent)") }
            let state = State(step: step, tokensSeen: tokensSeen, elapsed: elapsed, batches: try batches.savedState(), settings: settings,
                              optimizerStep: optimizer.step)
            let encoder = JSONEncoder(); encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(state), to: "\(tmp)/trainer_state.json")
            // Swap in: an existing directory of the same step is moved aside first, so one complete copy exists
            // at every moment.
            let old = "\(out)/.\(name).old"
            try? fm.removeItem(atPath: old)
            if fm.fileExists(atPath: final) { _ = rename(final, old) }
            try AtomicFile.syncDirectory(tmp)   // its entries first, then the rename that publishes them
            guard rename(tmp, final) == 0 else { throw TrainingError.checkpointWrite(path: final, reason: String(cString: strerror(errno))) }
            try AtomicFile.syncDirectory(out)
            try? fm.removeItem(atPath: old)
            // The model at the top of OUT, for `moe generate --model OUT` and AutoModelForCausalLM.
            let modelFiles = ["model.safetensors", "config.json", "generation_config.json"]
            for f in (lora == nil ? modelFiles : LoRAAdapters.files) + extraFiles.map({ ($0 as NSString).lastPathComponent }) {
                try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: "\(final)/\(f)")), to: "\(out)/\(f)")
            }
            if lora == nil, settings.saveDType != nil || settings.saveMXFP4Experts == true {
                try model.save(to: out, dtype: DType(rawValue: (settings.saveDType ?? "f32").uppercased()) ?? .f32,
                               mxfp4Experts: settings.saveMXFP4Experts ?? false)
            }
            for j in jointlyTrained {
                try fm.createDirectory(atPath: "\(out)/\(j.name)", withIntermediateDirectories: true)
                for f in modelFiles {
                    try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: "\(final)/\(j.name)/\(f)")), to: "\(out)/\(j.name)/\(f)")
                }
            }
        } catch let e as TrainingError {
            try? fm.removeItem(atPath: tmp)
            throw e
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw TrainingError.checkpointWrite(path: final, reason: "\(error)")
        }
        lastCheckpoint = final
        // Old checkpoints leave by a rename first, so a kill in the middle of deleting one never leaves a
        // `checkpoint-N` with some files gone (a resume would read it); leftovers of a killed deletion go here too.
        for old in Trainer.checkpoints(in: out).dropLast(2) {
            _ = rename("\(out)/checkpoint-\(old)", "\(out)/.checkpoint-\(old).deleting")
        }
        for n in (try? fm.contentsOfDirectory(atPath: out)) ?? [] where n.hasPrefix(".checkpoint-") && n.hasSuffix(".deleting") {
            try? fm.removeItem(atPath: "\(out)/\(n)")
        }
    }

    /// Steps of the complete checkpoints in `directory`, oldest first.
    public static func checkpoints(in directory: String) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n -> Int? in
            guard n.hasPrefix("checkpoint-"), let s = Int(n.dropFirst("checkpoint-".count)),
                  FileManager.default.fileExists(atPath: "\(directory)/\(n)/trainer_state.json") else { return nil }
            return s
        }.sorted()
    }

    /// Restores weights, optimizer moments, data order and step from the newest checkpoint in OUT.
    /// Returns false when there is none.
    @discardableResult
    public func resume() throws -> Bool {
        guard let last = Trainer.checkpoints(in: out).last else { return false }
        let dir = "\(out)/checkpoint-\(last)"
        let state: State
        do {
            state = try JSONDecoder().decode(State.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/trainer_state.json")))
        } catch { throw TrainingError.resume("\(dir)/trainer_state.json is unreadable: \(error)") }
        try batches.restore(state.batches)
        if let lora { try restoreAdapters(lora, from: dir) } else { try restoreModel(from: dir) }
        var resumed = state.settings
        resumed.steps = settings.steps; resumed.evalEvery = settings.evalEvery; resumed.evalBatches = settings.evalBatches
        resumed.checkpointEvery = settings.checkpointEvery; resumed.logEvery = settings.logEvery; resumed.timeLimit = settings.timeLimit
        settings = resumed
        try dataParallel?.check(accumulation: settings.accumulation)   // the checkpoint's global batch, on these ranks
        if let w = settings.mtpLossWeight { model.mtpLossWeight = w }
        try Self.readMoments(optimizer, trainedStore, from: "\(dir)/optimizer.safetensors", step: state.optimizerStep)
        for j in jointlyTrained {
            let saved = try Checkpoint(directory: "\(dir)/\(j.name)")
            let w = j.model.store.values!
            for t in j.model.store.tensors {
                (w + t.offset).update(from: try FloatEncoding.floats(try saved.tensor(t.name, shape: t.shape)), count: t.count)
            }
            try Self.readMoments(j.optimizer, j.model.store, from: "\(dir)/\(j.name)/optimizer.safetensors", step: state.optimizerStep)
        }
        step = state.step; tokensSeen = state.tokensSeen; elapsedBefore = state.elapsed
        lastCheckpoint = dir
        metrics = MetricsLog.read(path: "\(out)/metrics.jsonl").filter { $0.step <= step }
        return true
    }

    /// AdamW's moments of `store` as a safetensors file.
    static func writeMoments(_ optimizer: AdamW, _ store: ParameterStore, to path: String) throws {
        guard let whole = optimizer.wholeMoments(store) else { throw TrainingError.badArgument("a share of the optimizer's moments cannot be saved alone") }
        try writeMoments(m: whole.m, v: whole.v, store, to: path)
    }

    /// Moments in the store's layout as a safetensors file.
    static func writeMoments(m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, _ store: ParameterStore, to path: String) throws {
        try SafeTensorsWriter.write(AdamW.stateTensors(store, m: m, v: v).map { t in
            SafeTensorsWriter.Entry(name: t.name, dtype: .f32, shape: [t.count]) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: t.pointer, count: t.count * 4))
            }
        }, to: path)
    }

    /// Reads the moments of `store` (a whole checkpoint's, whatever share `optimizer` keeps) into `optimizer`.
    static func readMoments(_ optimizer: AdamW, _ store: ParameterStore, from path: String, step: Int) throws {
        let moments = try SafeTensorsFile(path: path)
        func tensor(_ name: String, _ t: ParameterStore.Tensor) throws -> UnsafePointer<Float> {
            guard let data = moments.tensors[name], data.dtype == .f32, data.elementCount == t.count else {
                throw TrainingError.resume("\(path) lacks \(name)")
            }
            return UnsafePointer(data.pointer.assumingMemoryBound(to: Float.self))
        }
        for t in store.tensors {
            optimizer.setMoments(at: t.offset, m: try tensor("exp_avg.\(t.name)", t), v: try tensor("exp_avg_sq.\(t.name)", t), count: t.count)
        }
        optimizer.restore(step: step)
    }

    /// The model's weights from a checkpoint of a full (not LoRA) run.
    private func restoreModel(from dir: String) throws {
        if FileManager.default.fileExists(atPath: "\(dir)/adapter_config.json") {
            throw TrainingError.resume("\(dir) holds LoRA adapters: pass the run's --lora-rank (and --lora-alpha, --lora-targets) again")
        }
        let saved = try Checkpoint(directory: dir)
        let savedBias = saved.tensorNames.contains { $0.hasSuffix("e_score_correction_bias") }
        let modelBias = model.store.tensors.contains { $0.frozen }
        guard savedBias == modelBias else {
            throw TrainingError.resume(savedBias ? "the checkpoint was trained with --bias-update-rate: pass it again"
                                                 : "the checkpoint has no expert selection bias: resume without --bias-update-rate")
        }
        let savedMTP = model.mtp.map { saved.contains("\($0.prefix).eh_proj.weight") } ?? saved.tensorNames.contains { $0.hasSuffix(".eh_proj.weight") }
        guard savedMTP == (model.mtp != nil) else {
            throw TrainingError.resume(savedMTP ? "the checkpoint was trained with --mtp-depth 1: pass it again"
                                                : "the checkpoint has no multi-token-prediction module: resume with --mtp-depth 0")
        }
        let w = model.store.values!
        for t in model.store.tensors {
            let values = try FloatEncoding.floats(try saved.tensor(t.name, shape: t.shape))
            (w + t.offset).update(from: values, count: t.count)
        }
    }

    /// LoRA: the adapters from a checkpoint of a LoRA run (same rank, α and targets), applied to the model.
    private func restoreAdapters(_ lora: LoRAAdapters, from dir: String) throws {
        guard FileManager.default.fileExists(atPath: "\(dir)/adapter_config.json") else {
            throw TrainingError.resume("\(dir) holds a full model, not LoRA adapters: resume without --lora-rank")
        }
        do { try lora.load(from: dir) } catch { throw TrainingError.resume("\(error)") }
        lora.apply(to: model)
    }
}
