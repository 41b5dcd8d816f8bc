"""AWS Bedrock: SigV4 signing (``sigv4``), the event-stream framing of streamed answers
(``eventstream``), the Converse adapter (``converse``) and the credentials hook (``auth``)."""
