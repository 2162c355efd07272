"""`assistant eval`: a question set through several setups (closed book, RAG, oracle context; per
model and adapter) and the comparison table of accuracy, speed, memory and cost to update.

- ``questions``: the question file (MLQA/SQuAD-style JSONL or hand-written {"question", "answer"}).
- ``metrics``: SQuAD normalisation, exact match, token F1, contains, refusals, citations.
- ``runner``: each model loaded once, every answer through ``assistant.turn`` (what `ask` does).
- ``results``: the append-only results file a killed run resumes from.
- ``report``: the summary per setup, the table, Markdown and JSON lines.

No UI imports; llama.cpp is loaded when the runner opens a model.
"""
