import CKernels
import Foundation

/// Sinusoidal timestep embedding.
///
/// matches: diffusers `get_timestep_embedding` (models/embeddings.py): float32 exponents
/// `−ln(max_period)·i / (half − shift)`, `exp`, `t·freq·scale`, `[sin, cos]` (or `[cos, sin]` when
/// `flipSinToCos`), zero-padded when the dimension is odd.
public enum TimestepEmbedding {
  public static func sinusoidal(
    timesteps: [Float], dimension: Int, flipSinToCos: Bool, downscaleFreqShift: Float,
    scale: Float = 1, maxPeriod: Float = 10000
  ) -> Tensor {
    let half = dimension / 2
    var freqs = [Float](repeating: 0, count: half)
    let logPeriod = Float(-Foundation.log(Double(maxPeriod)))
    for i in 0..<half {
      let exponent = logPeriod * Float(i) / (Float(half) - downscaleFreqShift)
      freqs[i] = ipa_exp1(exponent)  // Sleef expf_u10, as torch.exp
    }
    var out = Tensor.zeros([timesteps.count, dimension])
    out.withUnsafeMutableFloats { d in
      for (row, t) in timesteps.enumerated() {
        for i in 0..<half {
          let arg = t * freqs[i] * scale
          let (s, c) = (Foundation.sin(arg), Foundation.cos(arg))
          let o = row * dimension
          if flipSinToCos {
            d[o + i] = c
            d[o + half + i] = s
          } else {
            d[o + i] = s
            d[o + half + i] = c
          }
        }
      }
    }
    return out
  }
}
