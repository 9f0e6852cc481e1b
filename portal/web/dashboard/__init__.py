"""The partner dashboard: views, the words it shows for the domain's states, and its charts."""
