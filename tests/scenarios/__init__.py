"""The shared scenario suite: every scenario runs on every provider through its driver."""
