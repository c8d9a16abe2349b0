/// Domain prompts (ELLE section 4): a GPT sequence starts with its domain's prompt token and
/// predicts the window's tokens from there: inputs [p, x1 .. x(T-1)], targets [x1 .. xT].
public enum PromptedBatch {
    /// Rewrites a batch of windows in place: `inputs` (rows, T) held x1..xT and `targets`
    /// x2..x(T+1); afterwards inputs hold [prompt, x1..x(T-1)] and targets x1..xT.
    public static func apply(prompt: Int32, inputs: UnsafeMutablePointer<Int32>,
                             targets: UnsafeMutablePointer<Int32>, rows: Int, seq t: Int) {
        for r in 0..<rows {
            let x = inputs + r * t, y = targets + r * t
            y.update(from: x, count: t)
            x[0] = prompt
            (x + 1).update(from: y, count: t - 1)
        }
    }
}
