"""The ChuteConfig / ChuteGateway front door (group ``chutes.troubleshat.com``)."""
