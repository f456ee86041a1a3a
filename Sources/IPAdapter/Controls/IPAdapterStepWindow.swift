/// The part of the denoising schedule during which an adapter is active, as fractions
/// `0 ≤ start ≤ end ≤ 1` of it. Outside the window the adapter's scale is 0 (exactly as if it were
/// not loaded for that step).
///
/// Our rule (default), the official one: at step `i` of `n` (0-based, `n` = number of denoising
/// iterations, i.e. `len(timesteps)`) the adapter is **off** when `i/n < start` or
/// `(i + 1)/n > end`, computed in double precision like Python's `/`. So `[0, 1]` is always on,
/// `[0, 0]` never, and `end` cuts off every step that would *finish* past `end`.
///
/// ComfyUI differs: `start_at`/`end_at` become sigmas through `percent_to_sigma` (timestep
/// `(1 − p)·999`, with `p ≤ 0` → +∞ and `p ≥ 1` → 0) and a patch fires when
/// `sigma_end ≤ σ ≤ sigma_start` for the σ the model is evaluated at. That is a window in
/// *noise level*, not in step count: with the same fractions the two rules switch at different
/// steps (ComfyUI's depends on the scheduler's timestep spacing), and ComfyUI's interval is closed
/// at both ends. `isActiveComfyUI(timestep:)` reproduces it in timestep space (σ is monotonic in
/// the timestep, so `σ ≤ σ(t_start) ⇔ t ≤ t_start`); use it to match ComfyUI workflows.
///
/// matches: tencent-ailab/IP-Adapter `StableDiffusionXLCustomPipeline`
/// (`ip_adapter/custom_pipelines.py`, `control_guidance_start/end`) for `isActive(step:of:)`;
/// ComfyUI_IPAdapter_plus @ 9d076a3 `Attn2Replace.__call__` with ComfyUI `ModelSamplingDiscrete.
/// percent_to_sigma` for `isActiveComfyUI`. Known limitation of the ComfyUI form: at a timestep
/// exactly on a boundary, ComfyUI's float32 sigma interpolation may round the other way.
public struct IPAdapterStepWindow: Equatable, Sendable {
  public let start: Double
  public let end: Double

  /// The whole schedule.
  public static let full = try! IPAdapterStepWindow(start: 0, end: 1)

  /// Throws unless `0 ≤ start ≤ end ≤ 1`.
  public init(start: Double = 0, end: Double = 1) throws {
    guard start >= 0, start <= 1 else {
      throw IPAdapterControlError.outOfRange(name: "IP-Adapter start", value: start, range: "0…1")
    }
    guard end >= 0, end <= 1 else {
      throw IPAdapterControlError.outOfRange(name: "IP-Adapter end", value: end, range: "0…1")
    }
    guard start <= end else {
      throw IPAdapterControlError.outOfRange(name: "IP-Adapter start", value: start, range: "at most end = \(end)")
    }
    self.start = start
    self.end = end
  }

  /// Whether the adapter runs at 0-based step `step` of `count` (the official rule).
  public func isActive(step: Int, of count: Int) -> Bool {
    guard count > 0 else { return false }
    let n = Double(count)
    return !(Double(step) / n < start || Double(step + 1) / n > end)
  }

  /// ComfyUI's sigma window in timestep space: active when
  /// `(1 − end)·(T − 1) ≤ timestep ≤ (1 − start)·(T − 1)`, where `start ≤ 0` lifts the upper
  /// bound and `end ≥ 1` the lower bound (T = `trainTimesteps`, 1000 for Stable Diffusion).
  public func isActiveComfyUI(timestep: Double, trainTimesteps: Int = 1000) -> Bool {
    let last = Double(trainTimesteps - 1)
    if start > 0, timestep > (1 - start) * last { return false }
    if end < 1, timestep < (1 - end) * last { return false }
    return true
  }
}
