import Foundation
import TensorCore

extension Tape {
  /// GELU with the exact error function, `x · Φ(x)`.
  ///
  /// matches: `torch.nn.functional.gelu(x)` (`approximate="none"`). Backward:
  /// `dx = dy · (Φ(x) + x · φ(x))`.
  public func gelu(_ x: Variable) -> Variable {
    let xv = x.value
    let out = map(xv) { v in
      let d = Double(v)
      return Float(0.5 * d * (1 + erf(d / 2.0.squareRoot())))
    }
    return record(out, inputs: [x]) { g, _ in
      [Self.zipMap(g, xv) { dy, v in
        let d = Double(v)
        let cdf = 0.5 * (1 + erf(d / 2.0.squareRoot()))
        let pdf = exp(-0.5 * d * d) / (2 * Double.pi).squareRoot()
        return Float(Double(dy) * (cdf + d * pdf))
      }]
    }
  }

  /// SiLU, `x · σ(x)`.
  ///
  /// matches: `torch.nn.functional.silu`. Backward: `dx = dy · σ(x) · (1 + x · (1 − σ(x)))`.
  public func silu(_ x: Variable) -> Variable {
    let xv = x.value
    let out = map(xv) { v in
      let d = Double(v)
      return Float(d / (1 + exp(-d)))
    }
    return record(out, inputs: [x]) { g, _ in
      [Self.zipMap(g, xv) { dy, v in
        let d = Double(v)
        let s = 1 / (1 + exp(-d))
        return Float(Double(dy) * s * (1 + d * (1 - s)))
      }]
    }
  }

  func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let s = x.floatPointer, d = out.mutableFloatPointer
    for i in 0..<x.count { d[i] = f(s[i]) }
    return out
  }

  static func zipMap(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.floatPointer, pb = b.floatPointer, d = out.mutableFloatPointer
    for i in 0..<a.count { d[i] = f(pa[i], pb[i]) }
    return out
  }
}
