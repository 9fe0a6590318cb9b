// Saving and restoring the whole optimizer state (resident and spilled pages) as a safetensors
// file: `exp_avg` and `exp_avg_sq`, F32, one value per trainable parameter in optimizer order,
// and the step count in the metadata. The layout does not depend on the page size, so a run
// may resume with another page size or budget. Streams page by page: RAM stays within budget.
import QLoRAIO
import QLoRAKernels

extension PagedAdamW {
    static let checkpointFormat = "swift-qlora paged AdamW"
    static let checkpointVersion = "1"

    /// Writes the state to `path` atomically (a temporary name, fsync, rename). `metadata` is added
    /// to the file's metadata.
    /// - Throws: `nonFiniteState` (and writes nothing) when a moment is NaN or infinite.
    public func save(to path: String, metadata: [String: String] = [:]) throws(OptimizerError) {
        do {
            try store.waitIdle()
            let writer = try SafetensorsWriter(path: path, planned: [
                .init(name: "exp_avg", dtype: .F32, shape: [stateCount]),
                .init(name: "exp_avg_sq", dtype: .F32, shape: [stateCount]),
            ], lateTensors: 0, longestLateName: 0)
            try withPageScratch { (codec, scratch) throws(any Error) in
                for page in 0..<pageCount {
                    var source = UnsafeRawPointer(scratch)
                    if store.spilledForm(page) == nil {
                        source = UnsafeRawPointer(store.frame(page))
                    } else {
                        try store.readSpilled(page, into: scratch, codec: codec)
                    }
                    let offset = page * pageElements * 4, bytes = store.stateBytes[page] / 2  // of each moment
                    if let detail = nonFiniteMoment(source, firstIndex: page * pageElements, count: bytes / 4) {
                        throw OptimizerError.nonFiniteState(detail: detail)
                    }
                    try writer.write("exp_avg", at: offset, bytes: source, count: bytes)
                    try writer.write("exp_avg_sq", at: offset, bytes: source + pageElements * 4, count: bytes)
                }
            }
            var fields = metadata
            fields["format"] = "pt"
            fields["optimizer"] = Self.checkpointFormat
            fields["optimizer_version"] = Self.checkpointVersion
            fields["step"] = String(stepCount)
            try writer.finish(metadata: fields)
        } catch let error as OptimizerError {
            throw error
        } catch {
            throw .checkpoint(path: path, detail: "\(error)")
        }
    }

    /// Replaces the state with the one saved at `path` by `save(to:)`; returns the file's metadata.
    /// - Throws: `checkpoint` when the file is not such a state, was made for another set of
    ///   trainable parameters (nothing is changed then), or holds a NaN, an infinity or a negative
    ///   second moment (the state is then partly replaced: do not step with it).
    @discardableResult
    public func restore(from path: String) throws(OptimizerError) -> [String: String] {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw .checkpoint(path: path, detail: "\(error)") }
        guard file.metadata["optimizer"] == Self.checkpointFormat else {
            throw .checkpoint(path: path, detail: "not a swift-qlora optimizer state (no \"optimizer\": \"\(Self.checkpointFormat)\" metadata)")
        }
        guard file.metadata["optimizer_version"] == Self.checkpointVersion else {
            throw .checkpoint(path: path, detail: "optimizer state version \(file.metadata["optimizer_version"] ?? "none"); this build reads version \(Self.checkpointVersion)")
        }
        guard let stepText = file.metadata["step"], let step = Int(stepText), step >= 0 else {
            throw .checkpoint(path: path, detail: "missing or invalid \"step\" in the metadata")
        }
        var moments: [SafetensorsTensor] = []
        for name in ["exp_avg", "exp_avg_sq"] {
            guard let tensor = file.tensor(named: name) else { throw .checkpoint(path: path, detail: "no tensor \(name)") }
            guard tensor.dtype == .F32, tensor.shape == [stateCount] else {
                throw .checkpoint(path: path, detail: "\(name) is \(tensor.dtype.rawValue) \(tensor.shape), expected F32 [\(stateCount)]: the state was saved for another model, rank or set of target modules")
            }
            moments.append(tensor)
        }
        for page in 0..<pageCount {
            try store.residentForOverwrite(page)
            let frame = store.frame(page)
            let offset = page * pageElements * 4, bytes = store.stateBytes[page] / 2  // of each moment
            frame.copyMemory(from: file.data(of: moments[0]) + offset, byteCount: bytes)
            (frame + pageElements * 4).copyMemory(from: file.data(of: moments[1]) + offset, byteCount: bytes)
            if let detail = nonFiniteMoment(UnsafeRawPointer(frame), firstIndex: page * pageElements, count: bytes / 4) {
                // Nothing trained from such a state would be worth keeping; a fresh optimizer takes its place.
                throw .checkpoint(path: path, detail: "\(detail): the state is damaged; resume from another checkpoint")
            }
            store.markUsed(page)
            // The checkpoint's mapped pages would otherwise count in RSS until the file is closed.
            for tensor in moments { file.file.release(offset: tensor.fileOffset + offset, count: bytes) }
        }
        stepCount = step
        return file.metadata
    }
}

extension PagedAdamW {
    /// Describes the first bad value of one page's moments (m then v at `page`, `count` values of
    /// each): a NaN or infinite m or v, or a negative v (a sum of squares); nil when all are fine.
    func nonFiniteMoment(_ page: UnsafeRawPointer, firstIndex: Int, count: Int) -> String? {
        let m = page.assumingMemoryBound(to: Float.self)
        let v = (page + pageElements * 4).assumingMemoryBound(to: Float.self)
        if let index = firstNonFinite(m, count: count) { return "exp_avg[\(firstIndex + index)] is \(m[index])" }
        if let index = firstNonFinite(v, count: count) { return "exp_avg_sq[\(firstIndex + index)] is \(v[index])" }
        if let index = (0..<count).first(where: { v[$0] < 0 }) { return "exp_avg_sq[\(firstIndex + index)] is \(v[index]), below 0" }
        return nil
    }
}

/// How the optimizer state would be stored if every page were spilled now.
public struct CompressionSurvey: Sendable {
    public var pages = 0
    public var zeroPages = 0
    public var rawPages = 0
    public var compressedPages = 0
    /// Bytes of state (not counting the empty tail of the last page) and what their encodings take.
    public var rawBytes = 0
    public var storedBytes = 0
    /// rawBytes / storedBytes (zero pages store nothing; infinite when all are zero).
    public var ratio: Double { Double(rawBytes) / Double(storedBytes) }
}

extension PagedAdamW {
    /// Encodes every page (resident pages into a scratch; spilled ones as they are stored) and
    /// counts the encodings. Leaves the state unchanged.
    public func compressionSurvey() throws(OptimizerError) -> CompressionSurvey {
        try store.waitIdle()
        return withPageScratch { codec, scratch in
            var survey = CompressionSurvey()
            for page in 0..<pageCount {
                let encoding: PageEncoding, stored: Int
                if let form = store.spilledForm(page) {
                    (encoding, stored) = (form.encoding, form.storedBytes)
                } else {
                    (encoding, stored) = codec.encode(store.frame(page), into: scratch)
                }
                survey.pages += 1
                survey.rawBytes += store.stateBytes[page]
                survey.storedBytes += stored
                switch encoding {
                case .zero: survey.zeroPages += 1
                case .raw: survey.rawPages += 1
                case .shuffledLZ4: survey.compressedPages += 1
                }
            }
            return survey
        }
    }
}

extension PagedAdamW {
    /// Runs `body` with a codec and one page of scratch (the two extra pages of `peakBytes`).
    func withPageScratch<T, E: Error>(_ body: (PageCodec, UnsafeMutableRawPointer) throws(E) -> T) throws(E) -> T {
        let codec = PageCodec(pageBytes: config.pageBytes)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: config.pageBytes, alignment: 64)
        defer {
            codec.deallocate()
            scratch.deallocate()
        }
        return try body(codec, scratch)
    }
}
