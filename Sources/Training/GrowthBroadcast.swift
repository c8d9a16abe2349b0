import Communication
import Foundation
import Model
import Tensors

/// A grown model as one rank of the job holds it after `GrowthBroadcast`.
public struct ReceivedGrowth {
    public var config: ModelConfig
    public var parameters: FloatBuffer
    /// Adam's moments mapped by the growth when the plan carries them; nil when it resets them.
    public var moments: (m: FloatBuffer, v: FloatBuffer)?
    /// The growth itself (depth and width maps), on rank 0 only.
    public var growth: GrowthResult?
    /// XXH64 of the parameters followed by the moments, equal on every rank (set by `verify`).
    public var hash: UInt64 = 0
    /// This rank's time growing (rank 0 only), receiving the tensors (sending them, on rank 0),
    /// and hashing and comparing them.
    public var growSeconds = 0.0, broadcastSeconds = 0.0, verifySeconds = 0.0

    /// The tensors: parameters, then the moments when carried.
    public var buffers: [FloatBuffer] { [parameters] + (moments.map { [$0.m, $0.v] } ?? []) }
}

/// Model growth in a data-parallel job (docs/GROWTH.md, "Growth inside a run"): rank 0 grows
/// (`Growth.grow`), then broadcasts the grown config (JSON) and tensors; every rank hashes what
/// it holds and compares the hash with rank 0's. So the growth runs once, its randomness (maps,
/// noise) is drawn once, and every replica provably starts the grown model from the same bits.
///
/// `grow` is `receive` then `verify`; they are separate so a check can alter a copy in between.
/// All three are collectives: every rank calls them at the same point with the same plan.
public enum GrowthBroadcast {
    /// What rank 0 sends before the tensors.
    struct Header: Codable {
        var config: ModelConfig?
        var carriesMoments = false
        /// Why rank 0 could not grow the model (every rank then throws it).
        var error: String?
    }

    /// Grows the model on rank 0, sends it to every rank and verifies every copy. `parameters`
    /// (of `config`) and `moments` (needed when the plan carries them) are read on rank 0 only;
    /// other ranks may pass empty buffers. `what` says when ("after update 200") in messages.
    /// Throws the same `JobError` on every rank when the ranks' plans differ, when rank 0 cannot
    /// grow the model, or when a rank's copy differs from rank 0's (naming the rank).
    public static func grow(parameters: FloatBuffer, config: ModelConfig, moments: (m: FloatBuffer, v: FloatBuffer)? = nil,
                            plan: GrowthPlan, communicator: Communicator, what: String) throws -> ReceivedGrowth {
        var received = try receive(parameters: parameters, config: config, moments: moments, plan: plan,
                                   communicator: communicator, what: what)
        try verify(&received, communicator: communicator, what: what)
        return received
    }

    /// The growth and broadcast, without the final comparison.
    public static func receive(parameters: FloatBuffer, config: ModelConfig, moments: (m: FloatBuffer, v: FloatBuffer)? = nil,
                               plan: GrowthPlan, communicator c: Communicator, what: String) throws -> ReceivedGrowth {
        try c.verifySameFields(try flatFields(plan, prefix: "plan"), what: "growth plan \(what)")
        var header = Header()
        var growth: GrowthResult?
        var growSeconds = 0.0
        if c.isRoot {
            let start = DispatchTime.now().uptimeNanoseconds
            do {
                let grown = try Growth.grow(parameters: parameters, config: config, plan: plan,
                                            moments: plan.moments == .carry ? moments : nil)
                header.config = grown.config
                header.carriesMoments = grown.moments != nil
                growth = grown
            } catch {
                header.error = "\(error)"
            }
            growSeconds = seconds(since: start)
        }
        if c.size > 1 {
            let text = c.isRoot ? String(decoding: try JSONEncoder().encode(header), as: UTF8.self) : ""
            let shared = try c.broadcast(text, label: "grown model config broadcast from rank 0 \(what)")
            header = try JSONDecoder().decode(Header.self, from: Data(shared.utf8))
        }
        if let error = header.error {
            throw JobError("cannot grow the model \(what)\(c.size > 1 ? " (on rank 0)" : ""): \(error)")
        }
        guard let grownConfig = header.config else { throw JobError("rank 0 sent no grown model config \(what)") }

        let start = DispatchTime.now().uptimeNanoseconds
        var received: ReceivedGrowth
        if let growth {
            received = ReceivedGrowth(config: grownConfig, parameters: growth.parameters, moments: growth.moments, growth: growth)
        } else {
            let count = grownConfig.parameterCount
            let buffer = { FloatBuffer(count: count, zeroed: false) }
            received = ReceivedGrowth(config: grownConfig, parameters: buffer(),
                                      moments: header.carriesMoments ? (buffer(), buffer()) : nil)
        }
        for (buffer, name) in zip(received.buffers, ["parameters", "Adam first moment", "Adam second moment"]) {
            try c.broadcast(buffer, label: "grown \(name) broadcast from rank 0 \(what)")
        }
        received.broadcastSeconds = c.size > 1 ? seconds(since: start) : 0
        received.growSeconds = growSeconds
        return received
    }

    /// Hashes this rank's copy (XXH64 over the parameters, then the moments) and compares it with
    /// rank 0's; throws a `JobError` naming every rank whose copy differs.
    public static func verify(_ received: inout ReceivedGrowth, communicator: Communicator, what: String) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        var hasher = XXH64()
        for buffer in received.buffers { hasher.update(buffer.rawBytes) }
        received.hash = try communicator.verifyIdentical(hash: hasher.finalize(), what: "copies of the grown model received \(what)")
        received.verifySeconds = seconds(since: start)
    }

    static func seconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}
