"""The REST adapter: /classify, /classify/batch, health, bundle information and reloads, the demo
page; its forms, answers and schemas."""
