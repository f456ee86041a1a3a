import Foundation
import TensorCore
import Testing

@testable import Weights

@Suite("TorchCheckpoint reading golden torch.save files")
struct TorchCheckpointReaderTests {
  @Test("every tensor, layout and metadata value matches what Python wrote", arguments: TorchFixtures.goodFiles)
  func readsFixture(_ name: String) throws {
    let expected = try #require(try TorchFixtures.expected().files[name])
    let checkpoint = try TorchCheckpoint(path: TorchFixtures.path(name))
    #expect(checkpoint.archiveName == expected.archive)
    #expect(checkpoint.pickleProtocol == expected.protocol)
    #expect(checkpoint.formatVersion == "3")
    #expect(checkpoint.keys == expected.tensors.keys.sorted())
    for (key, e) in expected.tensors {
      let info = try #require(checkpoint.info(key), "\(name) \(key)")
      #expect(info.storedType == e.dtype, "\(name) \(key)")
      #expect(info.shape == e.shape, "\(name) \(key)")
      let layout = try #require(checkpoint.layout(key))
      #expect(layout.strides == e.stride, "\(name) \(key)")
      #expect(layout.storageOffset == e.storage_offset, "\(name) \(key)")
      #expect(layout.isRowMajor == e.contiguous, "\(name) \(key)")
      #expect(try checkpoint.rawBytes(key) == e.rawBytes, "\(name) \(key)")
      if let bits = e.f32_bits {
        let t = try checkpoint.tensor(key)
        #expect(t.dtype.rawValue == e.dtype, "\(name) \(key)")
        #expect(t.shape == e.shape, "\(name) \(key)")
        #expect(bytesOf(t) == e.rawBytes, "\(name) \(key)")
        #expect(f32Bits(t) == bits, "\(name) \(key)")
      } else {
        let error = #expect(throws: TorchCheckpointError.self) { try checkpoint.tensor(key) }
        #expect(error == .notAFloatType(path: checkpoint.path, key: key, dtype: e.dtype))
        #expect(error?.description.contains("not a float type") == true)
        #expect(try checkpoint.int64Values(key) == e.int_values!.map { Int64($0)! }, "\(name) \(key)")
      }
    }
    // Tensors share a storage record exactly when Python's tensors shared a storage.
    for (a, ea) in expected.tensors {
      for (b, eb) in expected.tensors {
        let same = checkpoint.layout(a)!.storageKey == checkpoint.layout(b)!.storageKey
        #expect(same == (ea.storage_group == eb.storage_group), "\(name): \(a) vs \(b)")
      }
    }
    #expect(checkpoint.metadata == expected.metadata.mapValues(\.value), "\(name)")
  }

  @Test("the IP-Adapter .bin and the same weights as .safetensors load identical tensors")
  func binMatchesSafetensors() throws {
    let bin = try TorchCheckpoint(path: TorchFixtures.path("ip-adapter-plus.bin"))
    let st = try SafeTensorsFile(path: TorchFixtures.path("ip-adapter-plus.safetensors"))
    #expect(bin.keys == st.keys)
    #expect(bin.keys.contains("image_proj.latents"))
    #expect(bin.keys.contains("image_proj.layers.0.0.to_kv.weight"))
    #expect(bin.keys.contains("ip_adapter.1.to_k_ip.weight"))
    #expect(bin.keys.contains("ip_adapter.3.to_v_ip.weight"))
    var types: Set<String> = []
    for key in bin.keys {
      #expect(bin.info(key) == st.info(key), "\(key)")
      let a = try bin.tensor(key)
      let b = try st.tensor(key)
      #expect(a.dtype == b.dtype && a.shape == b.shape, "\(key)")
      #expect(bytesOf(a) == bytesOf(b), "\(key)")
      types.insert(a.dtype.rawValue)
    }
    #expect(types == ["F32", "F16"])
    // The state dicts' `_metadata` (set by BUILD on the OrderedDict) is not a tensor or leaf.
    #expect(bin.metadata.isEmpty)
  }

  @Test(".ckpt: state_dict keys, epoch/global_step metadata, int64 buffer, Lightning callback and numpy scalars")
  func ldmCheckpoint() throws {
    let ckpt = try TorchCheckpoint(path: TorchFixtures.path("sd-shaped.ckpt"))
    #expect(ckpt.keys.contains("state_dict.model.diffusion_model.input_blocks.0.0.weight"))
    #expect(ckpt.keys.contains("state_dict.model_ema.diffusion_modelinput_blocks00weight"))
    #expect(ckpt.metadata["epoch"] == .int(6))
    #expect(ckpt.metadata["global_step"]?.intValue == 840_000)
    #expect(ckpt.metadata["pytorch-lightning_version"]?.stringValue == "1.4.2")
    let callback = "callbacks.pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    #expect(ckpt.metadata["\(callback).best_model_score"] == .float(0.125))
    #expect(ckpt.metadata["\(callback).best_k"] == .int(-3))
    #expect(ckpt.metadata["callback_instance"] == .object("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"))
    #expect(ckpt.metadata["hparams.betas"] == .list([.float(0.9), .float(0.999)]))

    let ids = "state_dict.cond_stage_model.transformer.text_model.embeddings.position_ids"
    #expect(ckpt.info(ids) == TensorInfo(storedType: "I64", shape: [1, 7]))
    #expect(ckpt.info(ids)?.dtype == nil)
    #expect(throws: TorchCheckpointError.notAFloatType(path: ckpt.path, key: ids, dtype: "I64")) {
      try ckpt.tensor(ids)
    }
    #expect(try ckpt.int64Values(ids) == [0, 1, 2, 3, 4, 5, 6])
    #expect(try ckpt.int64Values("state_dict.model_ema.num_updates") == [1234])
    #expect(try ckpt.tensor("state_dict.model_ema.decay").scalars() == [Float(0.9999)])
    #expect(throws: TorchCheckpointError.notAnIntegerType(path: ckpt.path, key: "state_dict.model_ema.decay", dtype: "F32")) {
      try ckpt.int64Values("state_dict.model_ema.decay")
    }
    #expect(throws: TorchCheckpointError.tensorNotFound(path: ckpt.path, key: "nope")) { try ckpt.tensor("nope") }
  }

  @Test("pickle protocols 2, 4 and 5 of the same object read identically")
  func protocols() throws {
    let files = ["layouts.pt", "layouts-p4.pt", "layouts-p5.pt"].map { try! TorchCheckpoint(path: TorchFixtures.path($0)) }
    #expect(files.map(\.pickleProtocol) == [2, 4, 5])
    for other in files.dropFirst() {
      #expect(other.keys == files[0].keys)
      #expect(other.metadata == files[0].metadata)
      for key in files[0].keys {
        #expect(try other.rawBytes(key) == files[0].rawBytes(key), "\(key)")
        #expect(other.layout(key) == files[0].layout(key), "\(key)")
      }
    }
  }

  @Test("layouts: bf16, transposed and sliced copies, offset views, shared storage, stride-0 expand, rebuild variants")
  func layouts() throws {
    let ck = try TorchCheckpoint(path: TorchFixtures.path("layouts.pt"))
    let base = try ck.tensor("base").scalars()
    // base[i][j] row-major 4×6; transposed is its 6×4 transpose, gathered into a contiguous copy.
    let transposed = try ck.tensor("transposed")
    #expect(transposed.shape == [6, 4])
    let expectedTransposed: [Float] = (0..<6).flatMap { (j: Int) -> [Float] in (0..<4).map { (i: Int) -> Float in base[i * 6 + j] } }
    #expect(transposed.scalars() == expectedTransposed)
    #expect(try ck.tensor("row_view").scalars() == Array(base[12..<18]))
    let expectedColumns: [Float] = (0..<4).flatMap { (i: Int) -> [Float] in [base[i * 6 + 1], base[i * 6 + 2]] }
    #expect(try ck.tensor("column_slice").scalars() == expectedColumns)
    #expect(try ck.tensor("expanded").scalars() == [1, 2, 3, 1, 2, 3])
    #expect(ck.layout("expanded")?.strides == [0, 1])
    #expect(try ck.tensor("bf16").dtype == .bfloat16)
    #expect(try ck.tensor("bf16").scalars() == [1.0, -3.140625, 0.5, 65280.0, -0.0, 0.0009765625])
    #expect(try ck.tensor("scalar").shape == [])
    #expect(try ck.tensor("scalar").scalars() == [2.5])
    #expect(try ck.tensor("empty").shape == [0, 4])
    #expect(try ck.tensor("param").scalars() == [0.25, -0.5])
    #expect(try ck.tensor("param_with_state").scalars() == [1.5, 2.5, 3.5])
    #expect(try ck.tensor("tagged").scalars() == [4, 5])
    #expect(try ck.tensor("layers.1").dtype == .float16)
    // _rebuild_tensor_v3 with an UntypedStorage and the torch.uint16 dtype.
    #expect(ck.layout("uint16")?.storageElementType == .u8)
    #expect(ck.info("uint16")?.storedType == "U16")
    #expect(try ck.int64Values("uint16") == [1, 65535, 300])
    #expect(try ck.int64Values("mask") == [1, 0, 1])
    #expect(try ck.int64Values("long") == [0, 1, 2, 1 << 40, -5])
    #expect(ck.metadata["meta.huge"] == .object("int of 9 bytes"))
    #expect(ck.metadata["meta.nested.deeper.n"] == .int(3))
    #expect(ck.metadata["meta.bytes"] == .bytes([0, 1, 255]))
  }

  @Test("contiguous tensors are zero-copy views that borrow the mapping; others are copies")
  func zeroCopy() throws {
    let ck = try TorchCheckpoint(path: TorchFixtures.path("layouts.pt"))
    let mapped = ck.mapping.bytes
    func inMapping(_ t: Tensor) -> Bool {
      let p = t.rawPointer
      return p >= mapped.baseAddress! && p + t.byteCount <= mapped.baseAddress! + mapped.count
    }
    for key in ck.keys {
      guard let layout = ck.layout(key), layout.elementType.dtype != nil, layout.shape.reduce(1, *) > 0 else { continue }
      #expect(inMapping(try ck.tensor(key)) == layout.isRowMajor, "\(key)")
    }
    // Views of one storage point at the same bytes: element offsets become pointer offsets.
    let base = try ck.tensor("base")
    #expect(try ck.tensor("row_view").rawPointer == base.rawPointer + 12 * 4)
    #expect(try ck.tensor("shared.second").rawPointer == ck.tensor("shared.first").rawPointer + 4 * 4)
    // Reading the same key twice gives the same bytes, not a copy.
    #expect(try ck.tensor("base").rawPointer == base.rawPointer)

    // Borrowed storage: writing through a copy copies first and leaves the mapping untouched.
    var copy = base
    copy.withUnsafeMutableFloats { $0[0] = 42 }
    #expect(!inMapping(copy))
    #expect(copy.scalars()[0] == 42)
    #expect(base.scalars()[0] != 42)
    #expect(inMapping(base))
  }

  @Test("views stay valid after the checkpoint object is released")
  func viewsOutliveArchive() throws {
    var tensor: Tensor? = nil
    do {
      let ck = try TorchCheckpoint(path: TorchFixtures.path("ip-adapter-plus.bin"))
      tensor = try ck.tensor("image_proj.proj_in.weight")
    }
    let st = try SafeTensorsFile(path: TorchFixtures.path("ip-adapter-plus.safetensors"))
    #expect(try bytesOf(tensor!) == bytesOf(st.tensor("image_proj.proj_in.weight")))
  }

  @Test("TensorDictionary(loading:) and RenamedArchive work over a torch checkpoint")
  func composesWithArchives() throws {
    let ckpt = try TorchCheckpoint(path: TorchFixtures.path("sd-shaped.ckpt"))
    let prefix = "state_dict.model.diffusion_model."
    let unet = try RenamedArchive(ckpt) { key, _ in
      key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), nil) : nil
    }
    #expect(unet.keys == ["input_blocks.0.0.bias", "input_blocks.0.0.weight", "out.2.weight"])
    let dict = try TensorDictionary(loading: ckpt)
    #expect(!dict.keys.contains("state_dict.cond_stage_model.transformer.text_model.embeddings.position_ids"))
    #expect(dict.keys.count == ckpt.keys.count - 2)
  }
}
