import Model

extension GrowthPlan {
    /// One line: the options that shaped the growth.
    public var summary: String {
        "depth \(depthMode.rawValue), source \(source.rawValue), noise \(noise) on \(noiseScope == .copies ? "new copies" : "all tensors"), "
            + "Adam moments \(moments.rawValue), seed \(seed)" + (ramp.map { ", masked ramp over \($0) updates" } ?? "")
    }
}

extension GrowthResult {
    /// What the growth did to the layers and the widths, as `elle grow` and `elle train` print it.
    public func describe(from source: ModelConfig, plan: GrowthPlan) -> [String] {
        var lines: [String] = []
        let inserted = depth.inserted.indices.filter { depth.inserted[$0] }
        if !inserted.isEmpty {
            let copies = inserted.map { "\($0) <- \(depth.sources[$0])" }.joined(separator: ", ")
            lines.append("depth (\(plan.depthMode.rawValue)): inserted layers \(copies); layer origins \(config.layerOrigins ?? [])")
        }
        if config.width > source.width || config.heads > source.heads || config.ffn > source.ffn {
            let counts = Dictionary(grouping: width.residual, by: { $0 }).values.map(\.count)
            lines.append("width (\(plan.source.rawValue)): residual \(source.width) -> \(config.width) (copy counts \(counts.min()!)-\(counts.max()!)), "
                         + "heads \(source.heads) -> \(config.heads) x \(source.headDim), ffn \(source.ffn) -> \(config.ffn)")
        }
        return lines
    }
}
