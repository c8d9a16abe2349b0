import Tensors

/// Sums an update's micro-batch gradients on one rank in a fixed pairwise tree:
/// ((g0 + g1) + (g2 + g3)) + ..., the shape a reduction needs to give the same bits however the
/// update's micro-batches are split over ranks (each rank's share is a subtree).
///
/// A stack of partial sums, as a binary counter: the bottom one lives in the trainer's gradient
/// sum, the ones above it (smaller, newer) in buffers kept here. Each micro-batch but the last is
/// added with `add`, which merges equal-sized neighbours; the last one is folded in range by range
/// as backward finishes it (`partials`, newest first, then the bottom: `GradientSynchronizer`).
/// With 2 micro-batches this is the plain g0 + g1.
final class MicroBatchSum {
    /// Sizes (micro-batches summed) of the stack from the bottom up; buffers for all but the bottom.
    private var sizes: [Int] = []
    private var upper: [FloatBuffer] = []
    private var spare: [FloatBuffer] = []

    func beginUpdate() {
        sizes = []
        spare += upper
        upper = []
    }

    /// The partial sums above the bottom one, newest first (what the last micro-batch's gradient
    /// is folded with, range by range, before it is added to the bottom).
    var partials: [UnsafePointer<Float>] { upper.reversed().map { UnsafePointer($0.pointer) } }

    /// Adds a micro-batch gradient (not the update's last) into the tree whose bottom is `bottom`.
    func add(_ gradient: FloatBuffer, into bottom: FloatBuffer) {
        if sizes.isEmpty {
            bottom.copy(from: gradient)
            sizes = [1]
            return
        }
        // Push the new gradient as a partial of size 1, then merge equal neighbours from the top.
        spare.removeAll { $0.count != gradient.count }  // a growth changed the model's size
        let fresh = spare.popLast() ?? FloatBuffer(count: gradient.count, zeroed: false)
        fresh.copy(from: gradient)
        upper.append(fresh)
        sizes.append(1)
        while sizes.count >= 2 && sizes[sizes.count - 1] == sizes[sizes.count - 2] {
            let top = upper.removeLast()
            let below = upper.last ?? bottom
            addInPlace(below.pointer, top.pointer, count: below.count)
            spare.append(top)
            sizes[sizes.count - 2] *= 2
            sizes.removeLast()
        }
    }
}
