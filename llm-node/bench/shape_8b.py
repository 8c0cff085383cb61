"""What one `make bench SIZE=8b` run does: prompt sizes, repetitions, reply lengths and time
budgets (phase_8b.py runs them, table_8b.py names them in the table)."""

from __future__ import annotations

SHORT_TOKENS = 100  # prompt sizes, counted with the node's tokenizer (BOS included)
LONG_TOKENS = 1000
SHORT_REPS = 2
LONG_REPS = 1
MAX_TOKENS = 32  # replies to the ~100-token prompts: the decode rate's sample
LONG_MAX_TOKENS = 4
N_BATCH_LARGE = 128  # raw gpt4all's second n_batch, next to the node's default
CHAT_TURNS = 6
CHAT_WORDS = 30  # words of filler per user message (about 50 tokens a turn)
CHAT_REPLY_TOKENS = 16
UNCACHED_TURNS = (1, 6)
CHAT_SYSTEM = "Chat. You are a patient teacher."
IDLE_TIMEOUT_S = 600.0
RUN_BUDGET_S = 30 * 60  # phase_long_batch runs only if the run is younger
PEER_WAIT_S = 20 * 60
