using System.Net;
using System.Net.Sockets;

namespace Integration.Testing.Faults;

/// <summary>
/// A loopback TCP proxy in front of a real service, for fault injection without touching the shared service:
/// point the system under test at <see cref="Port"/>, then <see cref="Disconnect"/> to make the service look down
/// (every open connection is cut and new ones are refused) and <see cref="Reconnect"/> to bring it back.
/// </summary>
public sealed class TcpProxy : IAsyncDisposable
{
    readonly TcpListener _listener;
    readonly string _targetHost;
    readonly int _targetPort;
    readonly CancellationTokenSource _stopping = new();
    readonly List<(TcpClient Client, TcpClient Upstream)> _connections = [];
    readonly Task _acceptLoop;
    volatile bool _down;

    TcpProxy(string targetHost, int targetPort)
    {
        _targetHost = targetHost;
        _targetPort = targetPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = Task.Run(AcceptLoop);
    }

    /// <summary>The loopback port clients connect to.</summary>
    public int Port { get; }

    /// <summary>True while the proxy refuses traffic.</summary>
    public bool IsDown => _down;

    /// <summary>Connections accepted so far (both live and cut).</summary>
    public int AcceptedConnections { get; private set; }

    /// <summary>Starts a proxy to <paramref name="targetHost"/>:<paramref name="targetPort"/>.</summary>
    public static TcpProxy Start(string targetHost, int targetPort)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(targetHost);
        return new TcpProxy(targetHost, targetPort);
    }

    /// <summary>Cuts every open connection and refuses new ones until <see cref="Reconnect"/>.</summary>
    public void Disconnect()
    {
        _down = true;
        lock (_connections)
        {
            foreach (var (client, upstream) in _connections)
            {
                Abort(client);
                Abort(upstream);
            }

            _connections.Clear();
        }
    }

    /// <summary>Accepts and forwards connections again.</summary>
    public void Reconnect() => _down = false;

    async Task AcceptLoop()
    {
        while (!_stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }

            if (_down)
            {
                Abort(client);
                continue;
            }

            _ = Task.Run(() => Serve(client));
        }
    }

    async Task Serve(TcpClient client)
    {
        var upstream = new TcpClient();
        try
        {
            await upstream.ConnectAsync(_targetHost, _targetPort, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            Abort(client);
            Abort(upstream);
            return;
        }

        lock (_connections)
        {
            if (_down)
            {
                Abort(client);
                Abort(upstream);
                return;
            }

            AcceptedConnections++;
            _connections.Add((client, upstream));
        }

        var a = Pipe(client.GetStream(), upstream.GetStream());
        var b = Pipe(upstream.GetStream(), client.GetStream());
        await Task.WhenAny(a, b).ConfigureAwait(false);
        Abort(client);
        Abort(upstream);
        lock (_connections)
            _connections.Remove((client, upstream));
    }

    async Task Pipe(NetworkStream from, NetworkStream to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, _stopping.Token).ConfigureAwait(false)) > 0)
                await to.WriteAsync(buffer.AsMemory(0, read), _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    static void Abort(TcpClient client)
    {
        try
        {
            // RST rather than FIN: the peer sees the connection die as it would when a broker crashes.
            // A pair can be cut twice (a pump ending and Disconnect racing): Close nulls Client, so look before touching it.
            if (client.Client is { } socket)
                socket.LingerState = new LingerOption(true, 0);
            client.Close();
        }
        catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        Disconnect();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stopping.Dispose();
    }
}
