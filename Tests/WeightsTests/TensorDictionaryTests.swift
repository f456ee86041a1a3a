import TensorCore
import Testing
import Weights

@Suite("TensorDictionary")
struct TensorDictionaryTests {
  @Test("keys, info and tensors of an in-memory archive")
  func basics() throws {
    let dict = TensorDictionary(
      ["b": Tensor.zeros([2, 3]), "a": Tensor.full([4], 1).converted(to: .float16)], name: "test weights")
    #expect(dict.keys == ["a", "b"])
    #expect(dict.info("a") == TensorInfo(storedType: "F16", shape: [4]))
    #expect(dict.info("zzz") == nil)
    #expect(try dict.tensor("b").shape == [2, 3])
    let error = #expect(throws: WeightsError.self) { try dict.tensor("zzz") }
    #expect(error == .tensorNotFound(key: "zzz", archive: "test weights"))
    #expect(error?.description == #"test weights: no tensor named "zzz""#)
  }

  @Test("composing: load float tensors of a file under a new prefix, then merge")
  func compose() throws {
    let file = try SafeTensorsFile(path: Fixtures.path("mixed.safetensors"))
    let dict = try TensorDictionary(loading: file, include: { $0 != "scalar" }, rename: { "m." + $0 })
    // position_ids (I64) is skipped: the dictionary holds float tensors only.
    #expect(dict.keys == ["m.empty", "m.text.weight", "m.unet.half", "m.vae.bf16", "m.z\u{e9}"])
    #expect(try dict.tensor("m.unet.half").rawPointer == file.tensor("unet.half").rawPointer)
    let merged = dict.merging(["extra": Tensor.zeros([1])])
    #expect(merged.keys.count == 6)
    let archive: any TensorArchive = merged
    #expect(archive.info("extra")?.dtype == .float32)
  }
}
