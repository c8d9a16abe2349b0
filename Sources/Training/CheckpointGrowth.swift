import Model
import Tensors

extension Checkpoint {
    /// This checkpoint grown by `plan`: parameters grown, config and layer lineage updated, the
    /// training state (step, data position, options) kept so `elle train --resume` continues the
    /// same run on the grown model. With `moments: .carry` the Adam moments are mapped and the
    /// optimizer's step kept; with `.reset` they are dropped and the optimizer step is 0.
    public func grown(by plan: GrowthPlan) throws -> (checkpoint: Checkpoint, growth: GrowthResult) {
        guard let parameters = tensor("parameters") else {
            throw GrowthPlanError(field: "parameters", message: "tensor is missing from the checkpoint")
        }
        var moments: (m: FloatBuffer, v: FloatBuffer)?
        if plan.moments == .carry {
            guard let m = tensor("adam.m"), let v = tensor("adam.v") else {
                throw GrowthPlanError(field: "moments", message: "carry needs Adam moments, but the checkpoint holds none (use reset)")
            }
            moments = (m, v)
        }
        let growth = try Growth.grow(parameters: parameters, config: config, plan: plan, moments: moments)
        var state = self.state
        state.momentShards = nil  // the grown checkpoint holds its moments itself, if any
        var tensors: [(name: String, buffer: FloatBuffer)] = [("parameters", growth.parameters)]
        if let grownMoments = growth.moments {
            tensors += [("adam.m", grownMoments.m), ("adam.v", grownMoments.v)]
        } else {
            state.optimizerStep = 0
        }
        return (Checkpoint(config: growth.config, state: state, tensors: tensors), growth)
    }
}
