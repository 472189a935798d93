#!/usr/bin/env bash
# peer-setup.sh - ctest fixture "llamacpp_peer": installs llama.cpp's prebuilt
# CPU libraries (../shared/peer/setup.sh, npm node-llama-cpp) once, before the
# end-to-end tests that compare with llama.cpp start. Those tests run in
# parallel, and two concurrent npm installs into the same cache folder leave
# a half-installed package that the second test then finds and uses. Without
# node or the shared peer folder this does nothing; the tests skip that part.
set -u
: "${GROK_SHARED:?GROK_SHARED must name the shared folder}"
if ! command -v node >/dev/null 2>&1 || ! [ -x "$GROK_SHARED/peer/setup.sh" ]; then
  echo "no node or no $GROK_SHARED/peer/setup.sh: nothing to set up"; exit 0
fi
if dir=$("$GROK_SHARED/peer/setup.sh"); then
  echo "llama.cpp peer ready in $dir"
else
  echo "llama.cpp peer setup failed (the tests that need it will say so)"
fi
exit 0
