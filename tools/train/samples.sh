#!/bin/bash
# Prints sample conversations of a grok-nano GGUF, greedy (`grok run --temp 0`),
# as used in models/grok-nano.md. Usage: samples.sh GROK_BINARY MODEL.gguf
grok=$1 model=$2
S='<|separator|>'
ask() {   # $1 = conversation so far (grok-2 format, ends with "Assistant:")
    "$grok" run -m "$model" -p "$1" --temp 0 --stop "$S" -n 96 --no-stats -t 1 2>/dev/null | sed "s/$S//"
}
one() {
    printf 'Human: %s\nAssistant:%s\n\n' "$1" "$(ask "Human: $1$S"$'\n\n'"Assistant:")"
}
one "Who are you?"
one "What does serendipity mean?"
one "What does happy mean?"
one "Define ocean."
one "Give a synonym of big."
one "What is the opposite of cold?"
one "Use 'bright' in a sentence."
one "What kind of thing is a violin?"
one "What can you do?"
one "Write me a poem."
# two turns
p="Human: Hi!$S"$'\n\n'"Assistant:"
r1=$(ask "$p")
p2="$p$r1$S"$'\n\n'"Human: What does cat mean?$S"$'\n\n'"Assistant:"
r2=$(ask "$p2")
printf 'Human: Hi!\nAssistant:%s\nHuman: What does cat mean?\nAssistant:%s\n' "$r1" "$r2"
