// Placeholder: the CLIP tokenizer lands here.
