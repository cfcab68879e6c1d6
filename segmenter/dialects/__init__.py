"""Output dialects: each reads only the policy IR (``segmenter.policy.ir``) and is registered,
with its evaluator, as a target in ``segmenter.targets``."""
