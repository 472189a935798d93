#!/bin/sh
# Rebuilds grok-nano's data and tokenizer from WordNet (Debian wordnet-base):
# dialogues (data.py), SentencePiece BPE vocabulary (spm_train, Debian
# sentencepiece), token arrays (tokenize_data.py) and the small held-out
# files the test reads (make_test_data.py). Output under tools/train/out/.
set -e
cd "$(dirname "$0")"
nice -n 10 /usr/bin/python3 data.py
nice -n 10 spm_train --input=out/spm_text.txt --model_prefix=out/grok-nano --vocab_size=4096 --model_type=bpe \
  --byte_fallback=true --user_defined_symbols='<|separator|>' --add_dummy_prefix=true \
  --remove_extra_whitespaces=false --normalization_rule_name=identity --split_digits=true \
  --allow_whitespace_only_pieces=true --character_coverage=0.9999 \
  --pad_id=0 --bos_id=1 --eos_id=2 --unk_id=3 \
  --pad_piece='[PAD]' --bos_piece='[BOS]' --eos_piece='[EOS]' --unk_piece='[UNK]' \
  --input_sentence_size=1000000 --shuffle_input_sentence=true --num_threads=2 \
  --seed_sentencepiece_size=1000000 --max_sentencepiece_length=16 > out/spm_train.log 2>&1
cp out/grok-nano.model grok-nano.model
nice -n 10 /usr/bin/python3 tokenize_data.py
/usr/bin/python3 make_test_data.py
