import Foundation
import TensorCore

extension Tape {
  /// GELU with the exact error function, `x · Φ(x)`.
  ///
  /// matches: `torch.nn.functional.gelu(x)` (`approximate="none"`). Backward:
  /// `dx = dy · (Φ(x) + x · φ(x))`.
  public func gelu(_ x: Variable) -> Variable {
    let xv = x.value
    return record(Ops.gelu(xv), inputs: [x]) { g, _ in [try Ops.geluBackward(g, xv)] }
  }

  /// SiLU, `x · σ(x)`.
  ///
  /// matches: `torch.nn.functional.silu`. Backward: `dx = dy · σ(x) · (1 + x · (1 − σ(x)))`.
  public func silu(_ x: Variable) -> Variable {
    let xv = x.value
    return record(Ops.silu(xv), inputs: [x]) { g, _ in [try Ops.siluBackward(g, xv)] }
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
