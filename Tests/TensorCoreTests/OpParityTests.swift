import Testing
import TensorCore
import TestSupport
import Weights

/// Per-op parity with PyTorch goldens (`tools/reference/gen_ops.py` → `Fixtures/ops/ops.safetensors`).
/// Tolerance for every fp32 op: relative error `max|Δ| / max|ref|` ≤ 1e-5 unless stated.
@Suite struct OpParityTests {
  let ops: SafeTensorsFile

  init() throws { ops = try Fixtures.archive("ops/ops.safetensors") }

  func t(_ key: String) throws -> Tensor { try ops.tensor(key) }

  @Test func conv3x3Padding1MatchesTorch() throws {
    let conv = try Conv2DKernel(weight: try t("conv3x3.w"), bias: try t("conv3x3.b"), padding: .uniform(1))
    let y = try conv(try t("conv3x3.x").nhwc())
    #expect(Compare.relativeError(y, try t("conv3x3.y").nhwc()) <= 1e-5)
  }

  @Test func convResidualAccumulateAddsTheResidual() throws {
    let conv = try Conv2DKernel(weight: try t("conv3x3.w"), bias: try t("conv3x3.b"), padding: .uniform(1))
    let y = try conv(try t("conv3x3.x").nhwc(), accumulate: try t("conv3x3.res").nhwc())
    #expect(Compare.relativeError(y, try t("conv3x3.y_res").nhwc()) <= 1e-5)
  }

  @Test func conv1x1MatchesTorch() throws {
    let conv = try Conv2DKernel(weight: try t("conv1x1.w"), bias: try t("conv1x1.b"), padding: .uniform(0))
    let y = try conv(try t("conv3x3.x").nhwc())
    #expect(Compare.relativeError(y, try t("conv1x1.y").nhwc()) <= 1e-5)
  }

  @Test func convStride2MatchesTorch() throws {
    let conv = try Conv2DKernel(weight: try t("conv_s2.w"), bias: try t("conv_s2.b"), stride: 2, padding: .uniform(1))
    let y = try conv(try t("conv3x3.x").nhwc())
    #expect(y.shape == [2, 5, 6, 4])
    #expect(Compare.relativeError(y, try t("conv_s2.y").nhwc()) <= 1e-5)
  }

  @Test func convAsymmetricPaddingMatchesVAEDownsample() throws {
    let conv = try Conv2DKernel(
      weight: try t("conv_s2.w"), bias: try t("conv_s2.b"), stride: 2,
      padding: Padding2D(top: 0, left: 0, bottom: 1, right: 1))
    let y = try conv(try t("conv3x3.x").nhwc())
    #expect(Compare.relativeError(y, try t("conv_asym.y").nhwc()) <= 1e-5)
  }

  @Test func convPicksAnOptimisedKernel() throws {
    let conv = try Conv2DKernel(weight: try t("conv3x3.w"), bias: nil, padding: .uniform(1))
    let impl = try conv.implementation(batch: 2, height: 9, width: 11)
    #expect(!impl.hasPrefix("ref"), "oneDNN picked \(impl)")
  }

  @Test func linearMatchesTorch() throws {
    let linear = try LinearKernel(weight: try t("linear.w"), bias: try t("linear.b"))
    #expect(Compare.relativeError(try linear(try t("linear.x")), try t("linear.y")) <= 1e-5)
    #expect(Compare.relativeError(try linear(try t("linear.x"), accumulate: try t("linear.res")), try t("linear.y_res")) <= 1e-5)
  }

  @Test func linearWithFusedGeluMatchesTorch() throws {
    // oneDNN's fused erf-GELU; tolerance 1e-5 relative, as for the standalone op.
    let linear = try LinearKernel(weight: try t("linear.w"), bias: try t("linear.b"), activation: .gelu)
    #expect(Compare.relativeError(try linear(try t("linear.x")), try t("linear.y_gelu")) <= 1e-5)
  }

  @Test func linearWithHalfWeightsUpcastsExactly() throws {
    let w = try t("linear.w_f16")
    #expect(w.dtype == .float16)
    let linear = try LinearKernel(weight: w, bias: try t("linear.b"))
    #expect(Compare.relativeError(try linear(try t("linear.x")), try t("linear.y_f16w")) <= 1e-5)
  }

  @Test func groupNormMatchesTorch() throws {
    let x = try t("groupnorm.x").nhwc()
    let y = try Normalization.groupNorm(x, groups: 4, weight: try t("groupnorm.w"), bias: try t("groupnorm.b"), eps: 1e-5)
    #expect(Compare.relativeError(y, try t("groupnorm.y").nhwc()) <= 1e-5)
    let s = try Normalization.groupNorm(x, groups: 4, weight: try t("groupnorm.w"), bias: try t("groupnorm.b"), eps: 1e-5, silu: true)
    #expect(Compare.relativeError(s, try t("groupnorm.y_silu").nhwc()) <= 1e-5)
  }

  @Test func groupNormWideGroupsMatchesTorch() throws {
    let y = try Normalization.groupNorm(
      try t("groupnorm2.x").nhwc(), groups: 2, weight: try t("groupnorm2.w"), bias: try t("groupnorm2.b"), eps: 1e-6)
    #expect(Compare.relativeError(y, try t("groupnorm2.y").nhwc()) <= 1e-5)
  }

  @Test func layerNormMatchesTorch() throws {
    let y = try Normalization.layerNorm(try t("layernorm.x"), weight: try t("layernorm.w"), bias: try t("layernorm.b"), eps: 1e-5)
    #expect(Compare.relativeError(y, try t("layernorm.y")) <= 1e-5)
  }

  func attention(_ prefix: String, causal: Bool = false, chunk: Int? = nil) throws -> (Tensor, Tensor) {
    let q = try t("\(prefix).q").headsToTokens()
    let k = try t("\(prefix).k").headsToTokens()
    let v = try t("\(prefix).v").headsToTokens()
    let y = try Attention.multiHead(
      query: q, sources: [AttentionSource(key: k, value: v)], heads: 3, causal: causal, chunkRows: chunk)
    return (y, try t("\(prefix).y").headsToTokens())
  }

  @Test func attentionMatchesTorchSDPA() throws {
    let (y, ref) = try attention("sdpa")
    #expect(Compare.relativeError(y, ref) <= 1e-5)
  }

  @Test func attentionInSmallQueryChunksMatchesTorchSDPA() throws {
    // 50 queries in chunks of 7: eight blocks, the last one partial.
    let (y, ref) = try attention("sdpa", chunk: 7)
    #expect(Compare.relativeError(y, ref) <= 1e-5)
  }

  @Test func causalAttentionMatchesTorch() throws {
    let (y, ref) = try attention("sdpa_causal", causal: true, chunk: 5)
    #expect(Compare.relativeError(y, ref) <= 1e-5)
  }

  @Test func decoupledAttentionSumsScaledSources() throws {
    let q = try t("sdpa.q").headsToTokens()
    let text = AttentionSource(key: try t("sdpa.k").headsToTokens(), value: try t("sdpa.v").headsToTokens())
    let image = AttentionSource(
      key: try t("sdpa_ip.k2").headsToTokens(), value: try t("sdpa_ip.v2").headsToTokens(), scale: 0.6)
    let y = try Attention.multiHead(query: q, sources: [text, image], heads: 3)
    #expect(Compare.relativeError(y, try t("sdpa_ip.y").headsToTokens()) <= 1e-5)
  }

  @Test func zeroScaleSourceIsBitIdenticalToNoSource() throws {
    let q = try t("sdpa.q").headsToTokens()
    let text = AttentionSource(key: try t("sdpa.k").headsToTokens(), value: try t("sdpa.v").headsToTokens())
    let image = AttentionSource(
      key: try t("sdpa_ip.k2").headsToTokens(), value: try t("sdpa_ip.v2").headsToTokens(), scale: 0)
    let a = try Attention.multiHead(query: q, sources: [text], heads: 3)
    let b = try Attention.multiHead(query: q, sources: [text, image], heads: 3)
    #expect(a.scalars() == b.scalars())
  }

  @Test func activationsMatchTorch() throws {
    let x = try t("act.x")
    #expect(Compare.relativeError(Ops.gelu(x), try t("act.gelu")) <= 1e-5)
    #expect(Compare.relativeError(Ops.silu(x), try t("act.silu")) <= 1e-5)
    #expect(Compare.relativeError(Ops.quickGelu(x), try t("act.quick_gelu")) <= 1e-5)
    #expect(Compare.relativeError(try Ops.geglu(try t("geglu.x")), try t("geglu.y")) <= 1e-5)
  }

  @Test func nearestUpsampleMatchesTorchExactly() throws {
    let y = try Ops.upsampleNearest2x(try t("upsample.x").nhwc())
    #expect(y.scalars() == (try t("upsample.y").nhwc()).scalars())
  }

  @Test func timestepEmbeddingMatchesDiffusers() throws {
    // torch.exp on a CPU tensor goes through MKL's vsExp, which is not correctly rounded either:
    // a frequency can differ from ours by 1 ulp, which moves the sin/cos argument t·f (up to
    // ~1000 rad) by about one ulp of t. Bound per row: 2·ulp(t) + 1e-6.
    let ts = try t("temb.t").scalars()
    for (dim, flip, shift, key) in [(320, true, Float(0), "temb.sd15"), (33, false, Float(1), "temb.other")] {
      let a = TimestepEmbedding.sinusoidal(timesteps: ts, dimension: dim, flipSinToCos: flip, downscaleFreqShift: shift).scalars()
      let b = try t(key).scalars()
      for (row, step) in ts.enumerated() {
        let bound = 2 * max(step, 1).ulp + 1e-6
        for i in 0..<dim {
          #expect(abs(a[row * dim + i] - b[row * dim + i]) <= bound, "row \(row) column \(i)")
        }
      }
    }
  }
}
