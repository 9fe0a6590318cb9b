// The random NF4 models the training benchmarks run on: made once by `quantize --synthetic <shape>
// --seed 1` (Converter + SyntheticSource) into a cache directory, then loaded from there. Shared so
// that every benchmark of one shape measures the same weights.
import BenchmarkSupport
import Foundation
import QLoRAConvert
import QLoRAIO
import QLoRAModel

/// A synthetic model loaded from the benchmark cache.
public struct SyntheticModel {
    /// `<cache>/<shape>-nf4`.
    public let directory: String
    public let weights: LlamaWeights
    /// VmRSS just before the weights were loaded (after making them, if they were missing).
    public let rssBeforeLoad: Int

    /// Where the benchmarks keep their models unless told otherwise: $TMPDIR/qlora-bench.
    public static var defaultCache: String { NSTemporaryDirectory() + "qlora-bench" }
}

extension Benchmark {
    /// Loads the synthetic NF4 model of `shape` (a `SyntheticSource.presets` name) from `cache`,
    /// making it there first if it is missing. Fails the benchmark on any error.
    public func syntheticModel(_ shape: String, cache: String = SyntheticModel.defaultCache) -> SyntheticModel {
        let directory = cache + "/" + shape + "-nf4"
        if !FileManager.default.fileExists(atPath: directory) {
            log("making \(directory) (quantize --synthetic \(shape) --seed 1)")
            do {
                _ = try Converter.convert(try SyntheticSource(architecture: shape, seed: 1), options: ConvertOptions(output: directory))
            } catch { fail("\(error)") }
        }
        let rssBeforeLoad = ProcessMemory.statusBytes("VmRSS")
        do {
            return SyntheticModel(directory: directory, weights: try LlamaWeights(directory: directory), rssBeforeLoad: rssBeforeLoad)
        } catch { fail("\(error)") }
    }
}
