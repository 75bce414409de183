"""Model files: where each (model, quant) file comes from (package, hub, local path, derived), what
it is (identity, GGUF metadata), quant names, and the llama.cpp programs that make and serve it."""
