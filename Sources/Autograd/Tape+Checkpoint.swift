import TensorCore

extension Tape {
  /// Runs `body` on `inputs` without keeping its activations, recording it as one operation whose
  /// backward pass runs `body` again on a fresh tape and back-propagates through that (gradient
  /// checkpointing: memory for one block's activations at a time, for about one more forward pass).
  ///
  /// `body` must be deterministic and must read its trainable parameters as leaves that outlive
  /// the tape (``Variable/init(parameter:)``): their gradients accumulate when the block's backward
  /// runs, exactly once. Its inputs reach it as stand-in leaves with the same values.
  ///
  /// matches: `torch.utils.checkpoint.checkpoint(body, *inputs, use_reentrant=False)` (what
  /// diffusers' `enable_gradient_checkpointing` wraps around each ResNet and transformer block).
  public func checkpoint(_ inputs: [Variable], _ body: @escaping (Tape, [Variable]) throws -> Variable) throws -> Variable {
    let inner = Tape()
    let stand = inputs.map { Variable($0.value, requiresGrad: $0.requiresGrad, isLeaf: true) }
    let result = try body(inner, stand)
    // Nothing inside needs a gradient: a constant, like any unrecorded operation.
    guard result.requiresGrad else { return Variable(result.value, requiresGrad: false, isLeaf: false) }
    let output = Variable(result.value, requiresGrad: true, isLeaf: false)
    append(
      Node(inputs: inputs, output: output) { g, needs in
        let replay = Tape()
        let proxies = inputs.map { Variable($0.value, requiresGrad: $0.requiresGrad, isLeaf: true) }
        let y = try body(replay, proxies)
        try replay.backward(y, seed: g)
        return zip(proxies, needs).map { $1 ? $0.grad : nil }
      })
    return output
  }
}
