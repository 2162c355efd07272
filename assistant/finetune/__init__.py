"""`assistant finetune`: training on the device with llama.cpp's own optimizer (no torch).

data.py turns documents and JSONL chats into token windows; llama_opt.py is the ctypes binding
of llama.cpp's training API (the one module here that imports llama_cpp); train.py is the loop
(schedule, early stopping, checkpoints, resume); adapter.py turns the weight change into a PEFT
LoRA by truncated SVD, and writes the recipe that rebuilds base + adapter.
"""
