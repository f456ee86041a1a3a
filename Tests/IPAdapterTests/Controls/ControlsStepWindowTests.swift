import IPAdapter
import Testing

/// The step window against the official `StableDiffusionXLCustomPipeline` rule, written out here.
@Suite struct ControlsStepWindowTests {
  /// `not (i / n < start or (i + 1) / n > end)`.
  static func official(_ i: Int, _ n: Int, _ start: Double, _ end: Double) -> Bool {
    !(Double(i) / Double(n) < start || Double(i + 1) / Double(n) > end)
  }

  @Test func boundaries() throws {
    for n in [1, 4, 30] {
      #expect((0..<n).allSatisfy { IPAdapterStepWindow.full.isActive(step: $0, of: n) })
      #expect((0..<n).allSatisfy { !(try! IPAdapterStepWindow(start: 0, end: 0)).isActive(step: $0, of: n) })
      #expect((0..<n).allSatisfy { !(try! IPAdapterStepWindow(start: 1, end: 1)).isActive(step: $0, of: n) })
    }
    #expect(!IPAdapterStepWindow.full.isActive(step: 0, of: 0))
  }

  @Test func fractionsAtFourAndThirtySteps() throws {
    let windows: [(Double, Double)] = [
      (0, 0.5), (0.25, 1), (0.25, 0.75), (0.3, 0.8), (0.1, 0.9), (0.5, 0.5), (0, 0.26), (0.74, 1), (1.0 / 3, 2.0 / 3),
    ]
    for (start, end) in windows {
      let w = try IPAdapterStepWindow(start: start, end: end)
      for n in [4, 30] {
        for i in 0..<n { #expect(w.isActive(step: i, of: n) == Self.official(i, n, start, end), "[\(start), \(end)] step \(i)/\(n)") }
      }
    }
    // Spot checks: at 4 steps [0.25, 0.75] runs steps 1 and 2 only; at 30 steps [0, 0.5] runs 0…14.
    let mid = try IPAdapterStepWindow(start: 0.25, end: 0.75)
    #expect((0..<4).filter { mid.isActive(step: $0, of: 4) } == [1, 2])
    let firstHalf = try IPAdapterStepWindow(start: 0, end: 0.5)
    #expect((0..<30).filter { firstHalf.isActive(step: $0, of: 30) } == Array(0...14))
    // end 0.26 at 4 steps: step 0 finishes at 0.25 ≤ 0.26 → on; step 1 finishes at 0.5 → off.
    #expect((0..<4).filter { (try! IPAdapterStepWindow(start: 0, end: 0.26)).isActive(step: $0, of: 4) } == [0])
  }

  @Test func comfyTimestepWindow() throws {
    let w = try IPAdapterStepWindow(start: 0.2, end: 0.8)
    // Active for (1 − 0.8)·999 = 199.8 ≤ t ≤ (1 − 0.2)·999 = 799.2.
    #expect(!w.isActiveComfyUI(timestep: 999))
    #expect(!w.isActiveComfyUI(timestep: 800))
    #expect(w.isActiveComfyUI(timestep: 799))
    #expect(w.isActiveComfyUI(timestep: 200))
    #expect(!w.isActiveComfyUI(timestep: 199))
    #expect([999.0, 500, 1, 0].allSatisfy { IPAdapterStepWindow.full.isActiveComfyUI(timestep: $0) })
  }

  @Test func invalidWindowsAreTypedErrors() {
    #expect(throws: IPAdapterControlError.self) { try IPAdapterStepWindow(start: -0.1, end: 1) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterStepWindow(start: 0, end: 1.5) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterStepWindow(start: 0.7, end: 0.3) }
    #expect(throws: IPAdapterControlError.self) { try IPAdapterStepWindow(start: .nan, end: 1) }
  }
}
