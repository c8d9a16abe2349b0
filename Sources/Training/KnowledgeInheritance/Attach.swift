import Communication
import Foundation

extension Trainer {
    /// Loads the teacher (or top-K cache) that `options.distillation` names and attaches it;
    /// on resume `teacher`/`cache` may point at a moved copy (it must be the same teacher: its
    /// hash is checked). Logs what it attached through `log`. Collective.
    public func attachKnowledgeInheritance(teacher: String? = nil, cache: String? = nil, log: (String) -> Void) throws {
        guard let kd = options.distillation else { return }
        if let path = cache ?? kd.cache {
            let loaded = try TeacherCache(path: path)
            try attachTeacherCache(loaded)
            log(String(format: "knowledge inheritance: top-%d teacher cache %@ (teacher %@, %@; built with %.3e FLOPs, counted as teacher FLOPs)",
                       loaded.header.topK, path, loaded.header.teacher, loaded.header.teacherConfig, loaded.header.teacherFLOPs))
        } else {
            let loaded = try Teacher.load(teacher ?? kd.teacher, communicator: communicator)
            try attachTeacher(loaded)
            log("knowledge inheritance: teacher \(loaded.source) \(loaded.model.config) (\(formatCount(loaded.model.parameterCount)) parameters, xxh64 \(loaded.hashString)), forward only on every rank's batches")
        }
        let topK = kd.topK.map { "top \($0)" } ?? options.distillation?.topK.map { "top \($0)" } ?? "full distribution"
        log("  loss (1 - a_t) CE + a_t tau^2 KL, tau \(kd.temperature), \(kd.schedule) schedule\(kd.schedule == .constant ? " (a \(kd.weight))" : "") over \(kd.steps) updates from update \(kd.startStep), teacher \(topK)")
        try measureTeacherValidation(log: log)
    }
}
