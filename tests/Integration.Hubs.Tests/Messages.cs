namespace Integration.Hubs.Tests;

public sealed record JobAssigned(string DeviceId, string Job);

public sealed record Announcement(string Text);

public sealed record ItemChanged(string Id, string Group);
