// The governor gives memory back when RSS comes near the budget: optimizer pages first, then the
// frozen weights' pages; with room to spare it does nothing.
import QLoRAIO
import QLoRAOptim
import Testing
@testable import QLoRATrain

private func plan(budget: Int) -> MemoryPlan {
    MemoryPlan(budget: budget, choices: MemoryChoices(gradientCheckpointing: false, microBatch: 1, logitsChunkBytes: 1 << 20,
                                                      optimizerResidentBytes: nil, releaseWeightPages: false), components: [])
}

@Test func governorSpillsOptimizerPagesThenReleasesWeights() throws {
    let pageBytes = 64 << 10
    let optimizer = try PagedAdamW(trainable: [0..<64 * 8192], parameterCount: 64 * 8192, config: PagedAdamWConfig(pageBytes: pageBytes))
    let parameters = [Float](repeating: 0.5, count: 64 * 8192), gradients = [Float](repeating: 0.01, count: 64 * 8192)
    var values = parameters
    _ = try optimizer.step(parameters: &values, gradients: gradients)
    #expect(optimizer.residentPageLimit == 64)

    // Plenty of room: nothing changes.
    let roomy = MemoryGovernor(budget: ProcessMemory.current().residentBytes + (4 << 30), plan: plan(budget: 8 << 30), optimizer: optimizer)
    #expect(roomy.check() == nil && optimizer.residentPageLimit == 64 && !roomy.releaseWeightPages)

    // A budget the process already exceeds: each check gives back what it can.
    let tight = MemoryGovernor(budget: ProcessMemory.current().residentBytes / 2, plan: plan(budget: 1 << 30), optimizer: optimizer)
    let first = try #require(tight.check())
    #expect(first.contains("optimizer state now") && optimizer.residentPageLimit == MemoryPlanner.minimumResidentPages)
    let second = try #require(tight.check())
    #expect(second.contains("frozen weight pages are now released") && tight.releaseWeightPages)
    #expect(tight.check() == nil, "nothing is left to give back")
}
