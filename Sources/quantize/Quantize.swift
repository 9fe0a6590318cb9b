// `quantize`: converts a Hugging Face checkpoint or a GGUF file into a bitsandbytes NF4 checkpoint,
// or writes a seeded random model of a real architecture's shapes. Thin: flags -> QLoRAConvert.
import ArgumentParser
import Foundation
import QLoRACLI
import QLoRAConvert
import QLoRAKernels

@main
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a Hugging Face 4-bit (NF4, double-quantized) checkpoint that transformers + bitsandbytes load.",
        discussion: """
            Decoder linear weights become NF4 with double-quantized block constants, byte-identical to
            bitsandbytes 0.50.2; embeddings, lm_head and norms stay 16-bit. The output directory appears
            only when complete.

              quantize --input ~/models/SmolLM2-135M-Instruct.Q4_1.gguf --output smollm2-nf4
              quantize --input ~/models/TinyLlama-1.1B --output tinyllama-nf4
              quantize --synthetic llama-7b --output llama7b-random-nf4 --seed 1
            """,
        version: "0.1.0")

    @Option(name: .long, help: "A Hugging Face model directory (config.json + *.safetensors) or a .gguf file.")
    var input: String?

    @Option(name: .long, help: ArgumentHelp("Write random weights (normal, std 0.02) of this architecture instead.",
                                            valueName: "llama-125m|llama-1b|tinyllama-1.1b|llama-7b|llama-13b|llama-70b|config.json"))
    var synthetic: String?

    @Option(name: .long, help: "Output directory.")
    var output: String

    @Option(name: .long, help: "Seed for --synthetic.")
    var seed: UInt64 = 0

    @Option(name: .long, help: "16-bit dtype of unquantized tensors and of the quantized weights' record (default: the source's; float16 for GGUF).")
    var dtype: FloatEncoding?

    @Option(name: .long, help: "Largest safetensors shard: 50GB (decimal, as transformers' max_shard_size), 40GiB (binary), or bytes.")
    var maxShardSize: String = "50GB"

    @Flag(name: .long, help: "Replace an existing output directory.")
    var force = false

    @Flag(name: .shortAndLong, help: "Print the BLAS kernels and per-tensor details.")
    var verbose = false

    func validate() throws {
        if (input == nil) == (synthetic == nil) { throw ValidationError("Pass exactly one of --input or --synthetic.") }
        if (parseByteSize(maxShardSize) ?? 0) <= 0 { throw ValidationError("--max-shard-size '\(maxShardSize)' is not a size like 5GB or 500MB.") }
    }

    func run() throws {
        if verbose { FileHandle.standardError.write(Data((BLAS.describe() + "\n").utf8)) }
        let source: WeightSource
        do {
            source = try openSource()
        } catch {
            throw fail(error)
        }
        var options = ConvertOptions(output: output)
        options.force = force
        options.maxShardBytes = parseByteSize(maxShardSize)!
        let partial = Converter.partialDirectory(for: output)
        let cleanup = SignalHandler([SIGINT, SIGTERM, SIGHUP]) { signal in
            try? FileManager.default.removeItem(atPath: partial)
            FileHandle.standardError.write(Data("\nquantize: interrupted; removed partial output \(partial)\n".utf8))
            Foundation.exit(ExitStatus.interrupted(by: signal))
        }
        let bar = ProgressBar()
        do {
            let summary = try Converter.convert(source, options: options) { bar.update($0) }
            bar.finish()
            print(summary.report(source: source.origin, output: output))
        } catch {
            bar.finish()
            throw fail(error)
        }
        cleanup.cancel()
    }

    func openSource() throws -> WeightSource {
        if let synthetic { return try SyntheticSource(architecture: synthetic, seed: seed) }
        let path = input!
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("--input \(path) does not exist.")
        }
        if isDirectory.boolValue {
            return try HFCheckpointSource(directory: path, encoding: dtype)
        }
        return try GGUFSource(path: path, encoding: dtype ?? .float16)
    }

    /// Prints the message to stderr and turns it into a non-zero exit.
    func fail(_ error: Error) -> Error {
        if error is ValidationError { return error }
        printError(command: "quantize", error)
        return ExitCode(ExitStatus.failure)
    }
}

extension FloatEncoding: ExpressibleByArgument {}
