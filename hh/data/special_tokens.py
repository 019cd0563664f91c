"""The special tokens every hh tokenizer shares (bytes, SentencePiece, an imported model's own).

Ids 0-3 are pad, bos, eos and eoc (end-of-context: where preference scores are read, Askell et
al. 2021 App. C.4) for the byte and SentencePiece tokenizers alike; an imported tokenizer keeps
its own ids and adds the pieces it lacks.
"""

PAD_ID, BOS_ID, EOS_ID, EOC_ID = 0, 1, 2, 3
EOC_PIECE = "<eoc>"
# The dialogue markers of Bai et al. 2022 (docs/paper-notes.md §3) are single tokens wherever they
# appear, so turn boundaries are single positions whatever the corpus.
DIALOGUE_MARKERS = ("\n\nHuman:", "\n\nAssistant:")
