import ArgumentParser
import Communication
import Foundation
import Lifelong
import Tensors
import Training

/// `elle train --config PLAN`: the lifelong run of a stage plan (docs/LIFELONG.md).
func trainLifelong(plan path: String, out: String, resume: Bool, stopAfter: Int?, tensorboard: String?,
                   precision: Precision? = nil, zero: Int? = nil, allreduceDType: Precision? = nil, communicator: Communicator) throws {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw CommandError("--config \(path) cannot be read: \((error as NSError).localizedDescription)")
    }
    var plan = try StagePlan.parse(text, path: path)
    if let precision { plan.precision = precision }  // --precision over the plan's key
    if let zero { plan.zero = zero }
    if let allreduceDType { plan.allreduceDType = allreduceDType }
    Runtime.announce(precision: plan.precision, quiet: !communicator.isRoot)
    // Every rank must run the same plan (each reads its own copy of the file).
    try communicator.verifySameFields([("plan", String(format: "%016llx", Array(text.utf8).withUnsafeBytes { XXH64.hash($0) }))],
                                      what: "stage plan \(path)")
    let run = try LifelongRun(plan: plan, out: out, communicator: communicator, resume: resume, tensorboard: tensorboard)
    try run.run(stopAfter: stopAfter)
}
