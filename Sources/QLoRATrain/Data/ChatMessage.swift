// One turn of a conversation in the `messages` data form. Leaves out tool calls and multi-part
// (image, audio) content.

/// A `{"role": ..., "content": ...}` message.
public struct ChatMessage: Sendable, Equatable {
    /// The roles every supported chat template renders.
    public enum Role: String, Sendable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(_ role: Role, _ content: String) {
        self.role = role
        self.content = content
    }
}
