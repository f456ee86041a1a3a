import TensorCore

/// Elementwise float32 arithmetic on whole tensors for the schedulers.
///
/// Each closure is written with the same operation order as the diffusers expression it stands
/// for; Swift evaluates every `+ - * /` on `Float` with one IEEE rounding (no fusing, no
/// reassociation), which is what torch's separate elementwise kernels do.
enum TensorMath {
  static func map(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
    var out = Tensor(uninitializedShape: a.shape)
    let n = a.count
    a.withUnsafeFloats { x in
      out.withUnsafeMutableFloats { y in
        for i in 0..<n { y[i] = f(x[i]) }
      }
    }
    return out
  }

  static func map(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    var out = Tensor(uninitializedShape: a.shape)
    let n = a.count
    a.withUnsafeFloats { x in
      b.withUnsafeFloats { z in
        out.withUnsafeMutableFloats { y in
          for i in 0..<n { y[i] = f(x[i], z[i]) }
        }
      }
    }
    return out
  }

  static func map(
    _ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float
  ) -> Tensor {
    var out = Tensor(uninitializedShape: a.shape)
    let n = a.count
    a.withUnsafeFloats { x in
      b.withUnsafeFloats { z in
        c.withUnsafeFloats { w in
          out.withUnsafeMutableFloats { y in
            for i in 0..<n { y[i] = f(x[i], z[i], w[i]) }
          }
        }
      }
    }
    return out
  }

  static func map(
    _ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor,
    _ f: (Float, Float, Float, Float) -> Float
  ) -> Tensor {
    var out = Tensor(uninitializedShape: a.shape)
    let n = a.count
    a.withUnsafeFloats { x in
      b.withUnsafeFloats { z in
        c.withUnsafeFloats { w in
          d.withUnsafeFloats { v in
            out.withUnsafeMutableFloats { y in
              for i in 0..<n { y[i] = f(x[i], z[i], w[i], v[i]) }
            }
          }
        }
      }
    }
    return out
  }

  /// Throws unless every tensor has `reference`'s shape and is float32.
  static func checkShapes(_ operation: String, _ reference: Tensor, _ others: Tensor...) throws {
    for t in [reference] + others {
      guard t.dtype == .float32 else {
        throw SchedulerError.invalidValue(
          scheduler: operation, key: "dtype", value: "\(t.dtype)", reason: "schedulers work on float32 tensors")
      }
    }
    for t in others where t.shape != reference.shape {
      throw SchedulerError.shapeMismatch(operation: operation, expected: reference.shape, actual: t.shape)
    }
  }
}
