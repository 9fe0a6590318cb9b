// Finding a NaN or an infinity in a buffer of floats: checkpoints are checked with it before they
// are written and after they are read.

/// The index of the first NaN or infinity among `count` floats at `values`, or nil when every
/// value is finite. Scans blocks branch-free and only looks for the index in a block that has one.
public func firstNonFinite(_ values: UnsafePointer<Float>, count: Int) -> Int? {
    precondition(count >= 0)
    let block = 4096
    var start = 0
    while start < count {
        let end = min(count, start + block)
        var exponentAllOnes = false
        for i in start..<end { exponentAllOnes = exponentAllOnes || (values[i].bitPattern & 0x7F80_0000) == 0x7F80_0000 }
        if exponentAllOnes { return (start..<end).first { !values[$0].isFinite } }
        start = end
    }
    return nil
}
