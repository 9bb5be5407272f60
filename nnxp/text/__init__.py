"""Text: a BPE vocabulary (the seed's word mode and a lossless byte mode), token embeddings.

- :mod:`~nnxp.text.corpus`: reading UTF-8 text, the offline default corpus.
- :mod:`~nnxp.text.pretokenize`: lower case, words, chunks (gpt2/gpt4 patterns), streaming counts.
- :mod:`~nnxp.text.bpe`: learning merges with incremental pair counts.
- :mod:`~nnxp.text.tokenizer`: encode/decode, Hugging Face ``tokenizer.json`` files
  (checked by :mod:`~nnxp.text.schema`).
- :mod:`~nnxp.text.embedding`: the Embedding layer (gather forward, scatter-add backward).
- :mod:`~nnxp.text.model`: the next-token model (Bengio et al. 2003), its training loop, neighbours.
- :mod:`~nnxp.text.ngram`: interpolated Kneser-Ney and add-k n-gram baselines.
- :mod:`~nnxp.text.baselines`: the train/validation/test split and the baselines scored on it.
- :mod:`~nnxp.text.bench`, :mod:`~nnxp.text.bench_scale`: against Hugging Face tokenizers.  The commands are in :mod:`nnxp.cli.text`.
"""

from .bpe import Merges, learn_merges
from .corpus import default_corpus, read_corpus
from .tokenizer import Tokenizer, learn

__all__ = ["Merges", "Tokenizer", "default_corpus", "learn", "learn_merges", "read_corpus"]
