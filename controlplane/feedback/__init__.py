"""Processing feedback: reaction loops on WhatsApp messages while a client processes them.

Sessions live in Redis so any control-plane replica can drive them and a restart resumes them.
"""
