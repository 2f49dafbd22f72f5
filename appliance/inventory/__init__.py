"""Stream inventory: which boundary each topic crosses, who owns it, and whether the plan holds.

`measurements` is the input shape for per-topic figures (from a file today, the admin API later);
`checks` turns the declared `[[streams]]` plus measurements into findings. Both are pure.
"""
