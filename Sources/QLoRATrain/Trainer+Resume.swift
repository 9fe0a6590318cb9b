// What a resumed run must share with the run it continues: the settings that decide a step's
// arithmetic and the data it sees (the model and data compared by fingerprints of their files, not
// by the paths, which may be written differently or point elsewhere), and the schedule's length,
// which --max-steps or --epochs may extend.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel

extension Trainer {
    /// Settings recorded only to show where a run's files were: the fingerprints decide.
    static let informationalSettings: Set<String> = ["model", "train_data", "valid_data", "init_adapter"]

    /// The settings that decide the arithmetic of a step and the data it sees (with the LoRA shape
    /// in effect, an `--init-adapter`'s); a resumed run must use the same.
    func settings(lora l: LoRAConfig, modelDirectory: String) -> [String: String] {
        let c = config
        return [
            "model": resolvedPath(c.model), "model_fingerprint": Fingerprint.model(directory: modelDirectory),
            "train_data": resolvedPath(c.trainData), "train_data_fingerprint": Fingerprint.file(c.trainData),
            "seq_len": "\(c.seqLen)", "batch_size": "\(c.batchSize)", "grad_accum": "\(c.gradAccum)",
            "lr": "\(c.learningRate)", "lr_schedule": c.schedule.rawValue, "warmup_steps": "\(c.warmupSteps)", "weight_decay": "\(c.weightDecay)",
            "max_grad_norm": c.maxGradNorm.map { "\($0)" } ?? "none", "lora_r": "\(l.rank)", "lora_alpha": "\(l.alpha)",
            "lora_dropout": "\(l.dropout)", "target_modules": l.orderedTargets.map(\.rawValue).joined(separator: ","),
            "use_rslora": "\(l.useRSLoRA)", "lora_fa": "\(l.freezeA)", "seed": "\(c.seed)", "shuffle": "\(c.shuffle)", "packing": "\(c.packing)",
            "truncate": "\(c.truncate)", "skip_bad_rows": "\(c.skipBadRows)", "chat_template": c.chatTemplate,
            "valid_data": c.validData.map(resolvedPath) ?? "none", "valid_data_fingerprint": c.validData.map(Fingerprint.file) ?? "none",
            "valid_fraction": c.validData == nil ? "\(c.validFraction)" : "none",
            "init_adapter": c.initAdapter.map(resolvedPath) ?? "none",
        ]
    }

    func checkSettings(_ saved: [String: String], against now: [String: String], checkpoint: String) throws(TrainError) {
        let files = ["model_fingerprint": ("--model", config.model, "model"), "train_data_fingerprint": ("--data", config.trainData, "train_data"),
                     "valid_data_fingerprint": ("--valid-data", config.validData ?? "none", "valid_data")]
        for key in now.keys.sorted() where !Self.informationalSettings.contains(key) && saved[key] != nil && saved[key] != now[key] {
            if let (flag, path, pathKey) = files[key] {
                throw .checkpoint(path: checkpoint, detail: "was trained on \(saved[pathKey] ?? "other files"), whose names, sizes or contents "
                                  + "differ from what \(flag) \(path) holds now; resume with the same files, or start a new --output")
            }
            throw .checkpoint(path: checkpoint, detail: "was trained with \(key) = \(saved[key]!), this run has \(now[key]!); "
                              + "resume with the same flags (or start a new --output)")
        }
    }

    /// The run's number of optimizer steps: --max-steps, or --epochs (1 by default) over the
    /// training rows. A resumed run keeps its checkpoint's total unless one of the two flags gives
    /// another, which extends (or shortens) it; the note says how the schedule changes.
    func totalSteps(trainSequences: Int, resumed: TrainerState?) throws(TrainError) -> (total: Int, note: String?) {
        let rowsPerStep = config.batchSize * config.gradAccum
        let epochSteps = ((config.epochs ?? 1) * Double(trainSequences) / Double(rowsPerStep)).rounded(.up)
        let requested = config.maxSteps ?? max(1, Int(epochSteps))
        guard let resumed else { return (requested, nil) }
        guard config.maxSteps != nil || config.epochs != nil, requested != resumed.totalSteps else { return (resumed.totalSteps, nil) }
        let flag = config.maxSteps != nil ? "--max-steps \(requested)" : "--epochs \(config.epochs!) (\(requested) steps)"
        guard requested > resumed.step else {
            throw .checkpoint(path: config.resume ?? "", detail: "is at step \(resumed.step), so \(flag) leaves nothing to do; "
                              + "pass a larger --max-steps or --epochs to train on")
        }
        let schedule = config.schedule == .constant
            ? "the constant learning rate is unchanged"
            : "the \(config.schedule.rawValue) learning-rate schedule now ends at step \(requested); steps 1-\(resumed.step) followed the one ending at \(resumed.totalSteps)"
        return (requested, "\(flag): the run now has \(requested) steps instead of \(resumed.totalSteps); \(schedule)")
    }

    private func resolvedPath(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
}

/// Fingerprints of the files a run reads, to tell on resume whether they are the same files
/// wherever they are now.
enum Fingerprint {
    /// A model directory: each model file's name and size, and the XXH64 of its first MiB (all of
    /// config.json and the tokenizer files, the safetensors headers, which hold every tensor's
    /// shape and offsets). Cheap at any model size; a change inside a tensor's data that keeps
    /// every size is not seen. Other files (a run's --output inside the directory) do not count.
    static func model(directory: String) -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter(isModelFile).sorted()
        var hasher = XXH64()
        for name in names {
            let path = directory + "/" + name
            guard let handle = FileHandle(forReadingAtPath: path) else { continue }
            defer { try? handle.close() }
            let size = (try? handle.seekToEnd()).map(Int.init) ?? 0
            try? handle.seek(toOffset: 0)
            let head = (try? handle.read(upToCount: 1 << 20)) ?? Data()
            let entry = Array("\(name):\(size):".utf8) + Array(head)
            entry.withUnsafeBytes { hasher.update($0.baseAddress!, count: $0.count) }
        }
        return "\(names.count) files, xxh64 " + ChecksumManifest.hex(hasher.digest())
    }

    private static func isModelFile(_ name: String) -> Bool {
        name == "config.json" || name.hasSuffix(".safetensors") || name.hasSuffix(".safetensors.index.json")
            || name == "tokenizer.json" || name == "tokenizer_config.json"
    }

    /// A data file: its size and the XXH64 of all its bytes.
    static func file(_ path: String) -> String {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let hash = (try? ChecksumManifest.checksum(of: path)).map(ChecksumManifest.hex) ?? "unreadable"
        return "\(size) bytes, xxh64 \(hash)"
    }
}
