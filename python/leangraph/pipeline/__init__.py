"""The pieces every command drives: a model in any form, its variants, their gates."""
