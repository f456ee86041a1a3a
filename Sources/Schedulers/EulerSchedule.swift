/// The timestep and sigma tables of the Euler-family schedulers.
///
/// matches: `set_timesteps` of diffusers `EulerDiscreteScheduler` / `EulerAncestralDiscreteScheduler`
/// (0.42.1): float32 timesteps from the spacing rule, sigmas interpolated (`np.interp`, float64)
/// from the float32 training sigma table, then stored as float32.
enum EulerSchedule {
  /// The float32 timesteps, descending.
  static func timesteps(
    spacing: SchedulerOption.Spacing, trainTimesteps n: Int, steps: Int, stepsOffset: Int
  ) -> [Float] {
    switch spacing {
    case .linspace:
      // np.linspace(0, n - 1, steps, dtype=np.float32)[::-1]
      return NumericCompat.linspace(0, Double(n - 1), steps).map { Float($0) }.reversed()
    case .leading:
      let ratio = n / steps
      return (0..<steps).reversed().map { Float($0 * ratio) + Float(stepsOffset) }
    case .trailing:
      return NumericCompat.arange(Double(n), 0, -(Double(n) / Double(steps)))
        .map { Float(NumericCompat.round($0)) - 1 }
    }
  }

  /// `np.interp(timesteps, np.arange(0, len(sigmas)), sigmas)` in float64.
  static func interpolatedSigmas(_ timesteps: [Float], table: [Float]) -> [Double] {
    let fp = table.map { Double($0) }
    return timesteps.map { NumericCompat.interpOnIndexGrid(Double($0), fp) }
  }

  /// `init_noise_sigma`: the largest sigma for linspace/trailing spacing, else sqrt(max^2 + 1).
  static func initNoiseSigma(sigmas: [Float], spacing: SchedulerOption.Spacing) -> Float {
    let maxSigma = sigmas.max() ?? 0
    switch spacing {
    case .linspace, .trailing: return maxSigma
    case .leading: return (maxSigma * maxSigma + 1).squareRoot()
    }
  }
}
