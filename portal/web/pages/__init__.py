"""The customer's pages: the invitation link, sign-in, password, agreement, account."""
