#!/usr/bin/env bash
# test_tokenizer_spm.sh - `grok tokenize` must give exactly the ids that
# SentencePiece's spm_encode gives, for every case of the corpus.
#
# Corpus: tests/data/tokenizer_corpus.txt, one case per line (an empty line
# is the empty text). Escapes, expanded before use:
#   \n -> newline   \t -> tab   \r -> carriage return   \\ -> one backslash
#   \xHH -> the byte 0xHH (two hex digits; used for invalid UTF-8; never \x00)
# Any other backslash is kept as it is. The C unit test (tests/unit/
# test_tokenizer.c) reads the same file with the same rules.
#
# spm_encode works line by line, so a case holding newlines cannot be given
# to it whole. Grok-1's newline runs ("\n" x1..x10, ids 4..13) are
# user-defined symbols, matched whole (longest first) and never merged, so
# the text splits at them into independent pieces:
#   encode(S0 \n^k1 S1 \n^k2 S2 ...) =
#       spm(S0) [or the id of "▁" alone when S0 is empty]
#       ++ newline ids for k1 ++ nodummy(S1) ++ newline ids for k2 ++ ...
# where nodummy(S) (S without the dummy prefix "▁") is spm("0" S) minus its
# first two ids ("▁", "0": the digit is a user-defined symbol too, so the
# "▁" before it stays alone). The script checks those two ids.
#
# The text is passed after "--" (`grok tokenize -m MODEL -- TEXT`) so that
# cases starting with '-' are not taken for options.
#
# Environment (from ctest): GROK (the grok binary), GROK_SRC (repo root),
# GROK_SHARED (the shared folder), GROK_TMP (scratch). Exit 77 = skipped
# (only when spm_encode is not installed).
set -u
export LC_ALL=C

: "${GROK:?GROK must name the grok binary}"
: "${GROK_SRC:?GROK_SRC must name the repository root}"
GROK_SHARED=${GROK_SHARED:-$GROK_SRC/../shared}
GROK_TMP=${GROK_TMP:-${TMPDIR:-/tmp}}

if ! command -v spm_encode >/dev/null 2>&1; then
    echo "spm_encode not found (Debian package 'sentencepiece'): skipping"
    exit 77
fi

MODEL=$GROK_SHARED/models/grok-1/tokenizer.model
CORPUS=$GROK_SRC/tests/data/tokenizer_corpus.txt
for f in "$MODEL" "$CORPUS"; do
    if [ ! -f "$f" ]; then
        echo "missing $f"
        exit 1
    fi
done
if [ ! -x "$GROK" ]; then
    echo "missing grok binary: $GROK"
    exit 1
fi

mkdir -p "$GROK_TMP"
WORK=$(mktemp -d "$GROK_TMP/tokenizer_spm.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

SPACE_ID=130089 # "▁"
ZERO_ID=14      # "0"
NL10_ID=13      # "\n" x10; "\n" x k is id 3+k

# unescape TEXT -> REPLY
unescape() {
    local s=$1 out='' c
    while [[ $s == *\\* ]]; do
        out+=${s%%\\*}
        s=${s#*\\}
        case $s in
        n*) out+=$'\n'; s=${s:1} ;;
        t*) out+=$'\t'; s=${s:1} ;;
        r*) out+=$'\r'; s=${s:1} ;;
        \\*) out+='\'; s=${s:1} ;;
        x[0-9A-Fa-f][0-9A-Fa-f]*)
            printf -v c "\\x${s:1:2}"
            out+=$c
            s=${s:3}
            ;;
        *) out+='\' ;;
        esac
    done
    REPLY=$out$s
}

# newline_ids K -> REPLY: the ids of a run of K newlines
newline_ids() {
    local k=$1 r=''
    while ((k > 10)); do
        r+=" $NL10_ID"
        k=$((k - 10))
    done
    ((k > 0)) && r+=" $((3 + k))"
    REPLY=$r
}

cases=()
while IFS= read -r line || [[ -n $line ]]; do
    cases+=("$line")
done <"$CORPUS"
n_cases=${#cases[@]}
if ((n_cases == 0)); then
    echo "empty corpus"
    exit 1
fi

# Pass 1: the lines spm_encode must see. plan[i] describes case i as
# "q:<query index>:<ids to drop>" and "n:<newline count>" items.
queries=()
plan=()
texts=()
for ((i = 0; i < n_cases; i++)); do
    unescape "${cases[i]}"
    text=$REPLY
    texts+=("$text")
    p=''
    if [[ -n $text ]]; then
        rest=$text
        first=1
        while :; do
            if [[ $rest == *$'\n'* ]]; then
                seg=${rest%%$'\n'*}
                rest=${rest#"$seg"}
                nl=${rest%%[!$'\n']*}
                rest=${rest:${#nl}}
                k=${#nl}
            else
                seg=$rest
                rest=''
                k=0
            fi
            if ((first)); then
                if [[ -n $seg ]]; then
                    queries+=("$seg")
                    p+=" q:$((${#queries[@]} - 1)):0"
                else
                    p+=" s" # "▁" alone
                fi
                first=0
            elif [[ -n $seg ]]; then
                queries+=("0$seg")
                p+=" q:$((${#queries[@]} - 1)):2"
            fi
            ((k > 0)) && p+=" n:$k"
            [[ -z $rest ]] && break
        done
    fi
    plan+=("$p")
done

printf '%s\n' "${queries[@]}" >"$WORK/queries.txt"
if ! spm_encode --model="$MODEL" --output_format=id <"$WORK/queries.txt" >"$WORK/spm.txt"; then
    echo "spm_encode failed"
    exit 1
fi
spm=()
while IFS= read -r line || [[ -n $line ]]; do
    spm+=("$line")
done <"$WORK/spm.txt"
if ((${#spm[@]} != ${#queries[@]})); then
    echo "spm_encode gave ${#spm[@]} lines for ${#queries[@]} queries"
    exit 1
fi

# Pass 2: compare.
fail=0
pass=0
for ((i = 0; i < n_cases; i++)); do
    want=''
    bad_plan=''
    for item in ${plan[i]}; do
        case $item in
        s) want+=" $SPACE_ID" ;;
        n:*)
            newline_ids "${item#n:}"
            want+=$REPLY
            ;;
        q:*)
            item=${item#q:}
            q=${item%%:*}
            drop=${item#*:}
            read -r -a ids <<<"${spm[q]}"
            if ((drop == 2)); then
                if [[ ${ids[0]:-} != "$SPACE_ID" || ${ids[1]:-} != "$ZERO_ID" ]]; then
                    bad_plan="spm_encode of '0...' did not start with $SPACE_ID $ZERO_ID: ${spm[q]}"
                fi
                ids=("${ids[@]:2}")
            fi
            ((${#ids[@]})) && want+=" ${ids[*]}"
            ;;
        esac
    done
    want=${want# }
    got=$("$GROK" tokenize -m "$MODEL" -- "${texts[i]}" 2>"$WORK/stderr")
    rc=$?
    got=$(printf '%s' "$got" | tr -s ' \n' '  ')
    got=${got# }
    got=${got% }
    if [[ -n $bad_plan ]]; then
        echo "case $((i + 1)): $bad_plan"
        fail=$((fail + 1))
    elif ((rc != 0)); then
        echo "case $((i + 1)) [${cases[i]}]: grok tokenize failed (rc $rc): $(head -c 300 "$WORK/stderr")"
        fail=$((fail + 1))
    elif [[ $got != "$want" ]]; then
        echo "case $((i + 1)) [${cases[i]}]:"
        echo "  spm_encode: $want"
        echo "  grok:       $got"
        fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
done

echo "tokenizer vs spm_encode: $pass passed, $fail failed ($n_cases cases)"
((fail == 0)) || exit 1
exit 0
