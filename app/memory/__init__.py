"""Process-wide memory budgets, and handing freed memory back to the operating system."""
