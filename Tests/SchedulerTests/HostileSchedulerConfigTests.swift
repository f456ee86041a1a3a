import Foundation
import Schedulers
import Testing

/// `scheduler_config.json` values that used to index past the training tables or size huge ones
/// are typed errors naming the key.
@Suite struct HostileSchedulerConfigTests {
  static func config(_ json: String) throws -> SchedulerConfig {
    try SchedulerConfig(jsonData: Data(json.utf8))
  }

  static func expectInvalid(_ key: String, _ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let config = try Self.config(json)
    for kind in SchedulerKind.allCases {
      let error = #expect(throws: SchedulerError.self, "\(kind)", sourceLocation: sourceLocation) {
        try makeScheduler(kind: kind, config: config, steps: 20)
      }
      guard case .invalidValue(_, let k, _, _)? = error else {
        Issue.record("\(kind): expected invalidValue for \(key), got \(String(describing: error))", sourceLocation: sourceLocation)
        continue
      }
      #expect(k == key, sourceLocation: sourceLocation)
    }
  }

  @Test("steps_offset 5000 (of 1000 training steps) is refused by every scheduler")
  func stepsOffsetBeyondTheSchedule() throws {
    try Self.expectInvalid("steps_offset", #"{"num_train_timesteps": 1000, "steps_offset": 5000}"#)
    try Self.expectInvalid("steps_offset", #"{"steps_offset": -1}"#)
  }

  @Test("num_train_timesteps of 10¹² (integer or float literal), 0 and -5 are refused before any table is sized")
  func hugeOrTinyTrainTimesteps() throws {
    try Self.expectInvalid("num_train_timesteps", #"{"num_train_timesteps": 1000000000000}"#)
    try Self.expectInvalid("num_train_timesteps", #"{"num_train_timesteps": 0}"#)
    try Self.expectInvalid("num_train_timesteps", #"{"num_train_timesteps": -5}"#)
    // A float literal either decodes to the same integer or is a decoding error: never a trap.
    if let config = try? Self.config(#"{"num_train_timesteps": 1e12}"#) {
      #expect(throws: SchedulerError.self) { try makeScheduler(kind: .ddim, config: config, steps: 20) }
    }
  }

  @Test("betas outside [0, 1), NaN-free sigma options and clip ranges are checked")
  func floatRanges() throws {
    try Self.expectInvalid("beta_end", #"{"beta_end": 1.5}"#)
    try Self.expectInvalid("beta_start", #"{"beta_start": -0.1}"#)
    try Self.expectInvalid("trained_betas[1]", #"{"num_train_timesteps": 3, "trained_betas": [0.1, 2.0, 0.1]}"#)
    try Self.expectInvalid("beta_end", #"{"beta_end": Infinity}"#)
    try Self.expectInvalid("clip_sample_range", #"{"clip_sample_range": 0}"#)
    try Self.expectInvalid("sigma_max", #"{"sigma_max": NaN}"#)
  }

  @Test("1000 leading DDIM/PNDM steps with steps_offset 1 name the offset instead of indexing past the table")
  func leadingTimestepsPastTheEnd() throws {
    for kind in [SchedulerKind.ddim, .pndm] {
      let error = #expect(throws: SchedulerError.self) {
        try makeScheduler(kind: kind, config: .stableDiffusion15, steps: 1000)
      }
      guard case .invalidValue(_, "steps_offset", "1", let reason)? = error else {
        Issue.record("\(kind): \(String(describing: error))")
        continue
      }
      #expect(reason.contains("timestep 1000"))
    }
    // 999 steps stay inside the table.
    _ = try makeScheduler(kind: .ddim, config: .stableDiffusion15, steps: 999)
  }
}

extension HostileSchedulerConfigTests {
  @Test("a schedule whose alphas_cumprod underflow to 0 (8941 linear steps) gives a typed error, not a trap")
  func underflowingSchedule() throws {
    let config = try Self.config(#"{"num_train_timesteps": 8941}"#)
    for kind in SchedulerKind.allCases {
      do {
        let s = try makeScheduler(kind: kind, config: config, steps: 20)
        #expect(s.timesteps.allSatisfy { $0.isFinite }, "\(kind)")
      } catch let error as SchedulerError {
        #expect(error.description.contains("num_train_timesteps"), "\(kind): \(error)")
      }
    }
  }
}

extension HostileSchedulerConfigTests {
  @Test("scheduler_config.json that is not UTF-8 is a typed error (Foundation's JSON5 reader trapped on it)")
  func invalidUTF8() {
    let bytes: [UInt8] = [0x7B, 0xFC, 0x22, 0x3A, 0x20, 0x6C, 0x0A]  // {\xFC": l
    #expect(throws: SchedulerError.self) { try SchedulerConfig(jsonData: Data(bytes)) }
    #expect(throws: SchedulerError.self) { try SchedulerConfig(jsonData: Data([0x7B, 0x22, 0xC3, 0x22, 0x3A, 0x31, 0x7D])) }
  }
}
