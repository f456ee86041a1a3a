import Weights

/// The kind of image projection an IP-Adapter checkpoint carries, with every dimension read from
/// the tensor shapes (never from presets).
///
/// matches: the detection order of diffusers `_convert_ip_adapter_image_proj_to_diffusers`
/// (loaders/unet.py): `proj.weight` → global, `proj.3.weight` → full-face,
/// `perceiver_resampler.*` → FaceID-Plus, `norm.weight` → FaceID (16 tokens: Portrait),
/// otherwise the Resampler.
public enum IPAdapterVariant: Equatable, Sendable, CustomStringConvertible {
  /// `ImageProjModel`: global image embedding → `tokens` tokens (ip-adapter_sd15, _light, _vit-G).
  case global(embeddingDim: Int, crossDim: Int, tokens: Int)
  /// `MLPProjModel`: one token per CLIP hidden-state token (ip-adapter-full-face_sd15).
  case fullFace(clipDim: Int, crossDim: Int)
  /// `Resampler` (ip-adapter-plus_sd15, plus-face).
  case plus(Resampler.Shape)
  /// FaceID `MLPProjModel`: a face embedding → `tokens` tokens (ip-adapter-faceid_sd15/_sdxl;
  /// 16 tokens: the Portrait adapters, one block of tokens per face).
  case faceID(FaceIDShape)
  /// FaceID-Plus `ProjPlusModel`: ID tokens refined by a perceiver over the CLIP hidden states of
  /// the face crop (ip-adapter-faceid-plus_sd15, -plusv2_sd15, -plusv2_sdxl).
  case faceIDPlus(FaceIDShape, perceiver: Resampler.Shape)
  /// Qwen-VL's position-aware resampler (`QwenResampler`; adapters trained by `ipadapter train
  /// --projection qwen`).
  case qwen(QwenResampler.Shape)

  public var description: String {
    switch self {
    case .global(let e, let c, let t): "global embedding (ImageProjModel, \(e)→\(t)×\(c))"
    case .fullFace(let e, let c): "full-face (MLPProjModel, \(e)→\(c) per token)"
    case .plus(let s): "plus (Resampler, \(s.queries) queries, depth \(s.depth), \(s.heads) heads)"
    case .qwen(let s): "qwen (Qwen-VL resampler, \(s.grid)×\(s.grid) queries, \(s.heads) heads)"
    case .faceID(let f):
      f.tokens == 4
        ? "FaceID (MLPProjModel, \(f.idDim)-d face embedding → 4×\(f.crossDim))"
        : "FaceID Portrait (MLPProjModel, \(f.idDim)-d face embedding → \(f.tokens)×\(f.crossDim) per face)"
    case .faceIDPlus(let f, let p):
      "FaceID-Plus (ProjPlusModel, \(f.idDim)-d face embedding → \(f.tokens)×\(f.crossDim), perceiver depth \(p.depth) over \(p.embeddingDim)-wide CLIP features)"
    }
  }

  /// Whether the projection takes face embeddings (the FaceID family).
  public var usesFaceEmbedding: Bool {
    switch self {
    case .faceID, .faceIDPlus: true
    default: false
    }
  }

  /// Whether the projection reads a CLIP image encoder (every variant but plain FaceID).
  public var needsImageEncoder: Bool {
    if case .faceID = self { return false }
    return true
  }

  /// The face-embedding width of a FaceID variant (nil otherwise).
  public var faceEmbeddingDim: Int? {
    switch self {
    case .faceID(let f), .faceIDPlus(let f, _): f.idDim
    default: nil
    }
  }

  /// The CLIP output width the projection consumes.
  public var inputWidth: Int {
    switch self {
    case .global(let e, _, _): e
    case .fullFace(let e, _): e
    case .plus(let s): s.embeddingDim
    case .qwen(let s): s.kvDim
    case .faceID(let f): f.idDim
    case .faceIDPlus(_, let p): p.embeddingDim
    }
  }

  /// Width of the image-prompt tokens (must equal the UNet's cross-attention width).
  public var crossDim: Int {
    switch self {
    case .global(_, let c, _): c
    case .fullFace(_, let c): c
    case .plus(let s): s.outputDim
    case .qwen(let s): s.outputDim
    case .faceID(let f): f.crossDim
    case .faceIDPlus(let f, _): f.crossDim
    }
  }

  /// Whether the projection reads `image_embeds` (true) or `hidden_states[-2]` (false).
  public var usesImageEmbeds: Bool {
    if case .global = self { return true }
    return false
  }

  /// Largest tensor dimension variant detection accepts (real adapters: at most 8192).
  public static let maximumDimension = 1 << 20

  /// Detects the variant from the `image_proj` part of a checkpoint (keys without the prefix).
  public static func detect(_ p: any TensorArchive, path: String) throws -> IPAdapterVariant {
    func shape(_ key: String) -> [Int]? { p.info(key)?.shape }
    // Every dimension read from the file is bounded before it divides or sizes anything.
    func require(_ key: String, rank: Int) throws -> [Int] {
      guard let s = shape(key), s.count == rank else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "image_proj.\(key) is missing or not \(rank)-D (\(shape(key).map { "\($0)" } ?? "absent"))")
      }
      guard s.allSatisfy({ (1...Self.maximumDimension).contains($0) }) else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "image_proj.\(key) has shape \(s): every dimension must be in 1…\(Self.maximumDimension)")
      }
      return s
    }
    if shape("proj.weight") != nil {
      let w = try require("proj.weight", rank: 2)
      let c = try require("norm.weight", rank: 1)[0]
      guard w[0] % c == 0 else {
        throw IPAdapterError.notAnIPAdapter(path: path, reason: "image_proj.proj.weight \(w) is not a multiple of norm width \(c)")
      }
      return .global(embeddingDim: w[1], crossDim: c, tokens: w[0] / c)
    }
    if shape("proj.3.weight") != nil {
      let w0 = try require("proj.0.weight", rank: 2)
      let w2 = try require("proj.2.weight", rank: 2)
      return .fullFace(clipDim: w0[1], crossDim: w2[0])
    }
    // FaceID: proj.0 [hidden, id], proj.2 [T·C, hidden], norm [C].
    func faceID() throws -> FaceIDShape {
      let w0 = try require("proj.0.weight", rank: 2)
      let w2 = try require("proj.2.weight", rank: 2)
      let c = try require("norm.weight", rank: 1)[0]
      guard w2[1] == w0[0], w2[0] % c == 0 else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "image_proj.proj.0.weight \(w0), proj.2.weight \(w2) and norm width \(c) do not chain (proj.2 rows must be tokens × \(c))")
      }
      return FaceIDShape(idDim: w0[1], hiddenDim: w0[0], crossDim: c, tokens: w2[0] / c)
    }
    if shape("perceiver_resampler.proj_in.weight") != nil {
      let f = try faceID()
      let p = "perceiver_resampler."
      var depth = 0
      while shape("\(p)layers.\(depth).0.to_q.weight") != nil { depth += 1 }
      guard depth > 0 else { throw IPAdapterError.notAnIPAdapter(path: path, reason: "FaceID-Plus perceiver without layers") }
      let projIn = try require(p + "proj_in.weight", rank: 2)
      let projOut = try require(p + "proj_out.weight", rank: 2)
      let q = try require(p + "layers.0.0.to_q.weight", rank: 2)
      let ff = try require(p + "layers.0.1.1.weight", rank: 2)
      guard q[0] % 64 == 0 else {
        throw IPAdapterError.notAnIPAdapter(path: path, reason: "perceiver to_q has \(q[0]) rows, not a multiple of the 64-wide heads")
      }
      guard projIn[0] == f.crossDim, projOut[0] == f.crossDim else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "perceiver proj_in \(projIn) / proj_out \(projOut) do not match the ID tokens' width \(f.crossDim)")
      }
      var s = Resampler.Shape(
        dim: projIn[0], depth: depth, heads: q[0] / 64, queries: f.tokens, embeddingDim: projIn[1], outputDim: projOut[0])
      s.ffMult = max(1, ff[0] / projIn[0])
      return .faceIDPlus(f, perceiver: s)
    }
    if shape("norm.weight") != nil, shape("proj.0.weight") != nil {
      return .faceID(try faceID())
    }
    if shape("query") != nil, shape("attn.in_proj_weight") != nil {
      let query = try require("query", rank: 2)
      let proj = try require("proj", rank: 2)
      let (queries, dim) = (query[0], query[1])
      let grid = Int(Double(queries).squareRoot().rounded())
      guard grid * grid == queries, dim % 64 == 0, proj[0] == dim else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "Qwen resampler: query \(query) must be [G², E] with E a multiple of 64 (64-wide heads), proj \(proj) must be [E, C]")
      }
      let kvDim = shape("kv_proj.weight") != nil ? try require("kv_proj.weight", rank: 2)[1] : dim
      return .qwen(QwenResampler.Shape(grid: grid, dim: dim, kvDim: kvDim, outputDim: proj[1]))
    }
    guard shape("latents") != nil else {
      throw IPAdapterError.notAnIPAdapter(
        path: path, reason: "image_proj has none of proj.weight, proj.3.weight, latents (keys: \(p.keys.prefix(5).joined(separator: ", "))…)")
    }
    let latents = try require("latents", rank: 3)
    let dim = latents[2]
    var depth = 0
    while shape("layers.\(depth).0.to_q.weight") != nil { depth += 1 }
    guard depth > 0 else { throw IPAdapterError.notAnIPAdapter(path: path, reason: "Resampler without layers") }
    let q = try require("layers.0.0.to_q.weight", rank: 2)
    guard q[0] % 64 == 0 else {
      throw IPAdapterError.notAnIPAdapter(path: path, reason: "to_q has \(q[0]) rows, not a multiple of the 64-wide heads")
    }
    let projIn = try require("proj_in.weight", rank: 2)
    let projOut = try require("proj_out.weight", rank: 2)
    let ff = try require("layers.0.1.1.weight", rank: 2)
    var s = Resampler.Shape(
      dim: dim, depth: depth, heads: q[0] / 64, queries: latents[1], embeddingDim: projIn[1], outputDim: projOut[0])
    s.ffMult = max(1, ff[0] / dim)
    if shape("pos_emb.weight") != nil { s.maxSequenceLength = try require("pos_emb.weight", rank: 2)[0] }
    if shape("to_latents_from_mean_pooled_seq.1.weight") != nil {
      let pooled = try require("to_latents_from_mean_pooled_seq.1.weight", rank: 2)
      guard pooled[0] % dim == 0 else {
        throw IPAdapterError.notAnIPAdapter(
          path: path, reason: "to_latents_from_mean_pooled_seq.1.weight \(pooled) is not a multiple of the latent width \(dim)")
      }
      s.meanPooledLatents = pooled[0] / dim
    }
    return .plus(s)
  }

  /// Builds the (unloaded) projection module.
  public func makeProjection() -> any ImagePromptProjection {
    switch self {
    case .global(let e, let c, let t): ImageProjModel(embeddingDim: e, crossDim: c, tokens: t)
    case .fullFace(let e, let c): MLPProjModel(clipDim: e, crossDim: c)
    case .plus(let s): Resampler(s)
    case .qwen(let s): QwenResampler(s)
    case .faceID(let f): FaceIDProjModel(f)
    case .faceIDPlus(let f, let p): FaceIDPlusProjModel(f, perceiver: p)
    }
  }
}
