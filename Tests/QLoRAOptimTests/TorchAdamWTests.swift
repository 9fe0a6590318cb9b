// PagedAdamW against torch.optim.AdamW + clip_grad_norm_ (tools/reference/make_optim_fixtures.py):
// parameters after each recorded step, the gradient norms, and the moments after the last step,
// both with everything resident and with one-page residency that spills on every page.
import Foundation
@testable import QLoRAOptim
import QLoRAIO
import QLoRAKernels
import Testing
import _TestSupport

/// Parameters: the update rounds as torch's CPU kernels do op by op, except the square root:
/// torch's vectorized sqrt (16 or more values) is off by one ulp in ~17% of values (measured with
/// torch 2.15 on this CPU), ours is correctly rounded. So a parameter may differ by an ulp per step.
let parameterRelativeTolerance = 2.4e-7, parameterAbsoluteTolerance = 2e-8
/// Moments: the sqrt does not reach them, so they must be bitwise torch's.
let momentRelativeTolerance = 0.0, momentAbsoluteTolerance = 0.0
/// Gradient norm: summed in double here, float32 norms of per-tensor norms in torch.
let normRelativeTolerance = 1e-6

struct TorchScenario: CustomStringConvertible, Sendable {
    let name: String
    let paged: Bool
    var description: String { "\(name)/\(paged ? "paged" : "resident")" }
}

@Test(arguments: ["clip", "custom"].flatMap { name in [false, true].map { TorchScenario(name: name, paged: $0) } })
func pagedAdamWMatchesTorch(_ scenario: TorchScenario) throws {
    let fixture = try Fixture("optim")
    let meta = (fixture.meta["scenarios"] as! [String: Any])[scenario.name] as! [String: Any]
    let names = meta["tensor_order"] as! [String]
    let steps = meta["steps"] as! Int
    let paramSteps = Set(meta["param_steps"] as! [Int])
    let betas = meta["betas"] as! [Double]
    let adamW = AdamWConfig(learningRate: meta["lr"] as! Double, beta1: betas[0], beta2: betas[1], eps: meta["eps"] as! Double,
                            weightDecay: meta["weight_decay"] as! Double)
    let flat: (String) -> [Float] = { prefix in names.flatMap { fixture.floats("\(scenario.name).\(prefix).\($0)") } }
    var parameters = flat("init")
    let count = parameters.count
    let directory = try TemporaryDirectory()
    // Paged: 4 KiB pages (512 values, so pages straddle tensors), one resident, no prefetch room.
    let config = PagedAdamWConfig(adamW: adamW, maxGradNorm: meta["max_norm"] as? Double, pageBytes: 4096,
                                  residentBytes: scenario.paged ? 4096 : nil, spillDirectory: directory.path)
    let optimizer = try PagedAdamW(trainable: [0..<count], parameterCount: count, config: config)
    if scenario.paged { #expect(optimizer.pageCount > 2) }
    for step in 1...steps {
        var gradients = flat("grad.\(step)")
        let report = try parameters.withUnsafeMutableBufferPointer { p in
            try gradients.withUnsafeMutableBufferPointer { g in try optimizer.step(parameters: p.baseAddress!, gradients: g.baseAddress!) }
        }
        if scenario.name == "clip" {
            let expected = Double(fixture.floats("clip.total_norm")[step - 1])
            #expect(abs(report.gradientNorm - expected) <= normRelativeTolerance * expected, "step \(step) norm \(report.gradientNorm) vs \(expected)")
        }
        if paramSteps.contains(step) {
            let check = compare(parameters, flat("param.\(step)"), rtol: parameterRelativeTolerance, atol: parameterAbsoluteTolerance)
            #expect(check.passed, "\(scenario) parameters after step \(step): \(check)")
        }
    }
    if scenario.paged {
        let statistics = optimizer.statistics
        #expect(statistics.pagesSpilled > steps && statistics.pagesRestored > steps, "\(statistics)")
    }
    let saved = directory.path + "/state.safetensors"
    try optimizer.save(to: saved)
    let state = try SafetensorsFile(path: saved)
    for (name, tolerance) in [("exp_avg", momentRelativeTolerance), ("exp_avg_sq", momentRelativeTolerance)] {
        let tensor = try #require(state.tensor(named: name))
        let values = Array(UnsafeBufferPointer(start: state.data(of: tensor).assumingMemoryBound(to: Float.self), count: count))
        let check = compare(values, flat(name), rtol: tolerance, atol: momentAbsoluteTolerance)
        #expect(check.passed, "\(scenario) \(name): \(check)")
    }
    #expect(state.metadata["step"] == String(steps))
}
