import Foundation

/// Which files of a diffusers pipeline repo a download needs, given `model_index.json` and the repo's file list.
///
/// Rule: the root `model_index.json`, and, if present, the root `config.json`, `scheduler_config.json`,
/// `pipeline.py` and transformers' auxiliary files (`tokenizer.json`, `tokenizer_config.json`,
/// `preprocessor_config.json`, `processor_config.json`, `generation_config.json`, `chat_template.jinja`).
/// For each component of `model_index.json` (a key not starting with `_` whose value is a list, as
/// ``HubWireFormat/pipelineComponents(modelIndex:location:)`` reads them):
/// - a folder holding weights (`.safetensors`, `.bin`, `.ckpt`, `.onnx`, `.msgpack`, `.pb`) gets its `config.json`
///   and one set of weights: non-variant `*.safetensors` (with its shards and `.index.json`), else
///   `*.fp16.safetensors`, else non-variant `.bin`, else `*.fp16.bin`;
/// - any other folder (tokenizer, scheduler, feature_extractor, …) is taken whole.
///
/// matches: diffusers 0.42.1 `DiffusionPipeline.download` defaults (variant=None, use_safetensors=None) whenever
/// every weighted component has non-variant safetensors. Limitations: diffusers decides safetensors-vs-bin for the
/// whole pipeline (one component without safetensors makes it take `.bin` everywhere) and never falls back to
/// fp16 files without `variant="fp16"`; we choose per component and do fall back. No custom pipelines or
/// components (`<folder>/<class>.py`), no ONNX/Flax, no `_ignore_files`, no connected pipelines.
public enum PipelineFiles {
  static let weightExtensions = ["safetensors", "bin", "ckpt", "onnx", "msgpack", "pb"]
  static let rootFiles = [
    "model_index.json", "config.json", "scheduler_config.json", "pipeline.py", "chat_template.jinja",
    "generation_config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json",
    "tokenizer_config.json",
  ]

  /// The repo files to download, sorted. With `variant` (diffusers' `variant="fp16"`), each
  /// component takes its `*.{variant}.safetensors` (then `.bin`) files when it has them and its
  /// non-variant files otherwise, as diffusers falls back.
  public static func select(files: [String], components: [String], variant: String? = nil) -> [String] {
    let available = Set(files)
    var chosen = Set(rootFiles.filter { available.contains($0) })
    for component in components {
      let inFolder = files.filter { $0.hasPrefix(component + "/") }
      let weights = inFolder.filter { isWeight($0) }
      if weights.isEmpty {
        chosen.formUnion(inFolder)
        continue
      }
      if available.contains(component + "/config.json") { chosen.insert(component + "/config.json") }
      chosen.formUnion(chooseWeights(inFolder, variant: variant))
    }
    return chosen.sorted()
  }

  static func isWeight(_ path: String) -> Bool {
    weightExtensions.contains { path.hasSuffix("." + $0) }
  }

  /// One set of weights from one component folder (see the type's rule).
  static func chooseWeights(_ inFolder: [String], variant wanted: String? = nil) -> [String] {
    let order: [(String, String?)] = wanted.map { v in
      [("safetensors", v), ("safetensors", nil), ("bin", v), ("bin", nil)]
    } ?? [("safetensors", nil), ("safetensors", "fp16"), ("bin", nil), ("bin", "fp16")]
    for (ext, variant) in order {
      let matches = inFolder.filter { isWeightFile($0, ext: ext, variant: variant) }
      if !matches.isEmpty {
        let indexes = inFolder.filter { isIndexFile($0, ext: ext, variant: variant) }
        return matches + indexes
      }
    }
    return []
  }

  /// `name.ext`, `name-00001-of-00002.ext` (variant nil) or `name.fp16.ext`, `name.fp16-00001-of-00002.ext`.
  static func isWeightFile(_ path: String, ext: String, variant: String?) -> Bool {
    let file = path.split(separator: "/").last.map(String.init) ?? path
    guard file.hasSuffix("." + ext), !file.contains(".index.") else { return false }
    var stem = String(file.dropLast(ext.count + 1))
    if let shard = stem.range(of: #"-\d{5}-of-\d{5}$"#, options: .regularExpression) {
      stem.removeSubrange(shard)
    }
    let parts = stem.split(separator: ".", omittingEmptySubsequences: false)
    if let variant { return parts.count == 2 && parts[1] == variant }
    return parts.count == 1
  }

  /// `name.ext.index.json` (variant nil) or `name.ext.index.fp16.json`.
  static func isIndexFile(_ path: String, ext: String, variant: String?) -> Bool {
    let file = path.split(separator: "/").last.map(String.init) ?? path
    if let variant { return file.hasSuffix(".\(ext).index.\(variant).json") }
    return file.hasSuffix(".\(ext).index.json") && file.split(separator: ".").count == 4
  }
}
