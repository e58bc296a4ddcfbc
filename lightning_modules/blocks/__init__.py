"""Networks shared between methods: backbones and heads."""
