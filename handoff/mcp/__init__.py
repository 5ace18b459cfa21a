"""The MCP adapter: tools, resources and prompts over streamable HTTP and stdio."""
