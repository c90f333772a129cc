"""Property-based (hypothesis) tests of bad input: gRPC, config, webhooks, policy input, bundles (issue 5)."""
